package labprogs

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
)

// ErrInvalid is wrapped by the errors of Load functions given bad input,
// before anything is loaded.
var ErrInvalid = errors.New("labprogs: invalid argument")

var memlockOnce = sync.OnceValue(func() error {
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("labprogs: remove memlock limit: %w", err)
	}
	return nil
})

// setVars writes the read-only globals of spec, by name.
func setVars(spec *ebpf.CollectionSpec, vars map[string]any) error {
	for name, v := range vars {
		vs, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("labprogs: object has no variable %q", name)
		}
		if err := vs.Set(v); err != nil {
			return fmt.Errorf("labprogs: set %s: %w", name, err)
		}
	}
	return nil
}

// load loads spec into obj after setting vars.
func load(what string, spec *ebpf.CollectionSpec, err error, vars map[string]any, obj any) error {
	if err != nil {
		return fmt.Errorf("labprogs: %s: %w", what, err)
	}
	if err := memlockOnce(); err != nil {
		return err
	}
	if err := setVars(spec, vars); err != nil {
		return err
	}
	if err := spec.LoadAndAssign(obj, nil); err != nil {
		return fmt.Errorf("labprogs: load %s: %w", what, err)
	}
	return nil
}

// sumPerCPU adds up, with add, the per-CPU values V of a per-CPU array's
// key into a T.
func sumPerCPU[V, T any](m *ebpf.Map, key uint32, add func(*T, V)) (T, error) {
	var total T
	var per []V
	if err := m.Lookup(key, &per); err != nil {
		return total, fmt.Errorf("labprogs: read %s[%d]: %w", m, key, err)
	}
	for _, v := range per {
		add(&total, v)
	}
	return total, nil
}
