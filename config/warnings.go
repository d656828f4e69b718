package config

import "sort"

// Warnings lists what Parse accepts but is most likely a mistake, each
// located as an error is (FILE:LINE: KEY: message), in line order. `xlb
// check` prints them; none stops xlb from running:
//
//   - a backend at its VIP's own address: its packets would come back to
//     the balancer instead of reaching a server;
//   - a VIP whose backends all have weight 0 or are drained: it takes no
//     new flows (a legitimate state while draining a service, which is why
//     it is no error).
func (c *Config) Warnings() []*Error {
	var ws []*Error
	warn := func(key, format string, args ...any) {
		ws = append(ws, c.Errorf(key, format, args...).(*Error))
	}
	for i, v := range c.VIPs {
		vk := indexKey("vip", i)
		live := false
		for j, b := range v.Backends {
			if b.Address == v.Address {
				warn(indexKey(vk+".backend", j)+".address", "%s is the VIP's own address: its packets would come back to the balancer", b.Address)
			}
			if b.EffectiveWeight() > 0 {
				live = true
			}
		}
		if !live && len(v.Backends) > 0 {
			warn(vk, "every backend of %s has weight 0 or is drained: the VIP takes no new flows", v)
		}
	}
	sort.SliceStable(ws, func(i, j int) bool { return ws[i].Line < ws[j].Line })
	return ws
}
