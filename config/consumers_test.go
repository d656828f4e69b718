package config

import (
	"testing"
	"time"

	"github.com/xlbproject/xlb/flowtable"
	"github.com/xlbproject/xlb/health"
)

// What Parse accepts, the packages that take these values must accept too:
// the flow table and the health checker validate on their own, and a file
// that passes here must not fail there at start-up.
func TestBoundsFitConsumers(t *testing.T) {
	if MaxFlowTableSize > flowtable.MaxEntries || MaxFlowTimeout > flowtable.MaxTimeout || MinFlowTimeout < time.Millisecond {
		t.Errorf("flow bounds [%d, %v..%v] exceed flowtable's [%d, 1ms..%v]",
			MaxFlowTableSize, MinFlowTimeout, MaxFlowTimeout, flowtable.MaxEntries, flowtable.MaxTimeout)
	}
	if MinHealthInterval < health.MinInterval || MaxHealthInterval > health.MaxInterval || MaxHealthThreshold > health.MaxThreshold {
		t.Errorf("health bounds exceed the checker's")
	}
}

func TestHealthChecksValidate(t *testing.T) {
	c, err := Load(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	extreme := HealthCheck{Kind: HealthHTTP, Port: 1, Path: "/a?b=c", Host: "[2001:db8::1]:80", Expect: 599,
		Interval: MinHealthInterval, Timeout: MinHealthInterval - time.Millisecond, Rise: MaxHealthThreshold, Fall: 1}
	checks := []HealthCheck{extreme}
	for _, v := range c.VIPs {
		for _, b := range v.Backends {
			checks = append(checks, b.Health)
		}
		for _, r := range v.Routes {
			for _, b := range r.Backends {
				checks = append(checks, b.Health)
			}
		}
	}
	for _, hc := range checks {
		s := hc.Spec()
		if err := s.Validate(); err != nil {
			t.Errorf("%+v: %v", hc, err)
		}
		if s.WithDefaults(hc.Port) != s {
			t.Errorf("%+v: the checker would fill in defaults: %+v", hc, s.WithDefaults(hc.Port))
		}
	}
}
