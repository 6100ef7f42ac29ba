package agent

import (
	"container/heap"
	"time"
)

// never is the heap time of an entry waiting for a probe with no deadline of its own.
var never = time.Unix(1<<40, 0)

// timingHeap orders entries by their next probe time. Each slot carries its entry's time
// as an integer beside the pointer, so that sifting compares within the heap's own
// array instead of loading an entry per comparison: at 1000 targets the comparisons
// were a third of the scheduler's own CPU, mostly cache misses on entries.
type timingHeap []heapSlot

type heapSlot struct {
	at int64 // heapKey(e.next)
	e  *entry
}

// heapEpoch is the origin of heap keys; it has a monotonic reading, so keys of times
// read from time.Now (all of the scheduler's) follow the monotonic clock.
var heapEpoch = time.Now()

// heapKey is t in nanoseconds from heapEpoch; never and anything past 292 years sort
// last.
func heapKey(t time.Time) int64 { return int64(t.Sub(heapEpoch)) }

// push adds e at its e.next.
func (h *timingHeap) push(e *entry) { heap.Push(h, heapSlot{heapKey(e.next), e}) }

// fix restores the order after the entry at i changed its e.next.
func (h *timingHeap) fix(i int) {
	(*h)[i].at = heapKey((*h)[i].e.next)
	heap.Fix(h, i)
}

func (h timingHeap) Len() int { return len(h) }

func (h timingHeap) Less(i, j int) bool { return h[i].at < h[j].at }

func (h timingHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].e.index, h[j].e.index = i, j
}

func (h *timingHeap) Push(x any) {
	sl := x.(heapSlot)
	sl.e.index = len(*h)
	*h = append(*h, sl)
}

func (h *timingHeap) Pop() any {
	old := *h
	sl := old[len(old)-1]
	*h = old[:len(old)-1]
	return sl
}
