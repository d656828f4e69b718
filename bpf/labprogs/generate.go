package labprogs

// The generated *_bpfel.go and *_bpfel.o files are committed, so building
// needs no clang. Regenerate with `go generate ./bpf/...` (clang, llvm and
// libbpf-dev installed), as for package bpf.

//go:generate go tool bpf2go -cc clang -strip llvm-strip -target bpfel gen gen.c -- -I/usr/include/x86_64-linux-gnu -Wall -Werror
//go:generate go tool bpf2go -cc clang -strip llvm-strip -target bpfel sink sink.c -- -I/usr/include/x86_64-linux-gnu -Wall -Werror
//go:generate go tool bpf2go -cc clang -strip llvm-strip -target bpfel fwd fwd.c -- -I/usr/include/x86_64-linux-gnu -Wall -Werror
