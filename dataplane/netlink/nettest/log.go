package nettest

import (
	"bytes"
	"sync"
	"testing"
)

// logWriter forwards a process's output to t.Log line by line until closed
// (t.Log must not be called after the test ends).
type logWriter struct {
	t      testing.TB
	prefix string
	mu     sync.Mutex
	buf    bytes.Buffer
	closed bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return len(p), nil
	}
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line)
			break
		}
		w.t.Log(w.prefix + line[:len(line)-1])
	}
	return len(p), nil
}

func (w *logWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed && w.buf.Len() > 0 {
		w.t.Log(w.prefix + w.buf.String())
	}
	w.closed = true
}
