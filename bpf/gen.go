package bpf

// The generated *_bpfel.go and *_bpfel.o files are committed, so building xlb
// needs no clang. Regenerate with `go generate ./bpf/...` (clang, llvm and
// libbpf-dev installed); the output is byte-identical wherever the repository
// is checked out, which CI verifies.

//go:generate go tool bpf2go -cc clang -strip llvm-strip -target bpfel steer steer.c -- -mcpu=v3 -I/usr/include/x86_64-linux-gnu -Wall -Werror
//go:generate go tool bpf2go -cc clang -strip llvm-strip -target bpfel lb lb.c -- -I/usr/include/x86_64-linux-gnu -Wall -Werror
