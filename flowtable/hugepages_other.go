//go:build !linux

package flowtable

// adviseHugePages does nothing where there is no madvise(MADV_HUGEPAGE).
func adviseHugePages[K Key](buckets []bucket[K]) {}
