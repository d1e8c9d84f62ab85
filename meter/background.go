package meter

import (
	"context"
	"sync"
)

// background tracks work that outlives the call that started it, so a store
// stays open until that work is done.
type background struct {
	mu      sync.Mutex
	n       int
	idle    chan struct{} // closed while n == 0
	closed  bool
	onClose func() // runs once, when closed and idle
}

func newBackground(onClose func()) *background {
	idle := make(chan struct{})
	close(idle)
	return &background{idle: idle, onClose: onClose}
}

// goDo runs fn on a new goroutine, tracked until it returns.
func (b *background) goDo(fn func()) {
	b.add()
	go func() {
		defer b.done()
		fn()
	}()
}

// add tracks one more task; done ends it.
func (b *background) add() {
	b.mu.Lock()
	if b.n == 0 {
		b.idle = make(chan struct{})
	}
	b.n++
	b.mu.Unlock()
}

func (b *background) done() {
	b.mu.Lock()
	b.n--
	var closing func()
	if b.n == 0 {
		close(b.idle)
		if b.closed {
			closing, b.onClose = b.onClose, nil
		}
	}
	b.mu.Unlock()
	if closing != nil {
		closing()
	}
}

// pending returns how many tasks are running.
func (b *background) pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

// wait returns when no task is running, or ctx ends.
func (b *background) wait(ctx context.Context) error {
	b.mu.Lock()
	idle := b.idle
	b.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close runs onClose now if idle, or else when the last task returns.
func (b *background) close() {
	b.mu.Lock()
	b.closed = true
	var closing func()
	if b.n == 0 {
		closing, b.onClose = b.onClose, nil
	}
	b.mu.Unlock()
	if closing != nil {
		closing()
	}
}
