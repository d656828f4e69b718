//go:build cgo

package privilege

const builtWithCgo = true
