package collector

import (
	"io"
	"sync"
)

// A scrape renders the Store's metrics into memory under the read lock and
// writes them out after releasing it, so that a slow scraper does not hold
// up ingestion. The text goes into fixed-size blocks that the next scrape
// reuses: a million series take their 140 MB once, not a fresh, doubling
// buffer at every scrape for the garbage collector to catch up with.

const blockSize = 1 << 20

// blocks are the free blocks of past scrapes.
type blocks struct {
	mu   sync.Mutex
	free [][]byte
}

func (b *blocks) get() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n := len(b.free); n > 0 {
		block := b.free[n-1]
		b.free = b.free[:n-1]
		return block[:0]
	}
	return make([]byte, 0, blockSize)
}

func (b *blocks) put(block []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.free = append(b.free, block)
}

// spool is text held in blocks, handed one by one, as each fills, to
// drain, which writes them out meanwhile: a scrape compresses (gzip) on
// one core while the text is rendered on the other.
type spool struct {
	from    *blocks
	current []byte
	ready   chan []byte // filled blocks, in order
}

// maxQueued bounds the blocks waiting for drain: 4 GiB of text, far more
// than any scrape; past it, rendering waits for the scraper.
const maxQueued = 4096

func newSpool(from *blocks) *spool {
	return &spool{from: from, ready: make(chan []byte, maxQueued)}
}

func (s *spool) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if s.current == nil {
			s.current = s.from.get()
		}
		k := min(len(p), blockSize-len(s.current))
		s.current = append(s.current, p[:k]...)
		p = p[k:]
		if len(s.current) == blockSize {
			s.ready <- s.current
			s.current = nil
		}
	}
	return n, nil
}

// close hands on the last block: the text is complete.
func (s *spool) close() {
	if s.current != nil {
		s.ready <- s.current
		s.current = nil
	}
	close(s.ready)
}

// drain writes the blocks to w as they come, until close, and gives them
// back; after a write error it only gives them back.
func (s *spool) drain(w io.Writer) error {
	var err error
	for b := range s.ready {
		if err == nil {
			_, err = w.Write(b)
		}
		s.from.put(b)
	}
	return err
}
