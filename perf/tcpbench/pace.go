package tcpbench

import "time"

// pacer spaces requests at a fixed interval from start, open-loop: the
// schedule does not slip when a reply is late. A request sent behind
// schedule is sent at once and its latency is counted from its intended
// time, so a stall shows up in the percentiles instead of silently
// lowering the offered load (coordinated omission).
type pacer struct {
	start    time.Time
	interval time.Duration
	n        int64
}

// newPacer paces rate requests per second from start; rate must be > 0.
func newPacer(start time.Time, rate float64) *pacer {
	return &pacer{start: start, interval: time.Duration(float64(time.Second) / rate)}
}

// next returns the intended send time of the next request and advances.
func (p *pacer) next() time.Time {
	t := p.start.Add(time.Duration(p.n) * p.interval)
	p.n++
	return t
}

// await waits for the next request's turn and returns its intended time
// and the time its latency counts from. Behind schedule, it returns at
// once and latency counts from the intended time, so the wait caused by a
// slow reply is charged to the balancer. Ahead of schedule, it sleeps and
// latency counts from when the sleep ended: a timer waking late is the
// load generator's delay, not the balancer's.
func (p *pacer) await(now func() time.Time, sleep func(time.Duration)) (intended, from time.Time) {
	intended = p.next()
	if d := intended.Sub(now()); d > 0 {
		sleep(d)
		return intended, now()
	}
	return intended, intended
}
