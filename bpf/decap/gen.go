package decap

// decap_bpfel.go and decap_bpfel.o are generated and committed, as bpf's
// are (see bpf/gen.go); `go generate ./bpf/...` regenerates them.

//go:generate go tool bpf2go -cc clang -strip llvm-strip -target bpfel decap decap.c -- -I/usr/include/x86_64-linux-gnu -Wall -Werror
