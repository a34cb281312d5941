package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/go-kit/log/level"
	bolt "go.etcd.io/bbolt"
)

// The compacted base (State.Base) is megabytes: the collector's fold stores the JSON of the
// whole deployment.Aggregate, 7 MB at 2,000 components. Format 2 kept it as one bbolt value,
// rewritten whole at every compaction; bbolt puts a value that does not fit a page on a run of
// contiguous pages, and the single pages that appends take between two compactions broke up the
// run the previous base freed, so every daily rewrite extended the file: 6.4 GB for 85 MB of data
// after a year at 30 days of retention (store/README.md, "Size"). Format 3 keeps the base in the
// bucket base, cut into chunks small enough that every page of that bucket is a single page, so
// any free page fits them, and meta base_sum holds its length and CRC-32C.

// baseChunkSize is the most bytes of the base one value of the base bucket holds, in a file of
// pageSize-byte pages. bbolt puts at least two elements on a leaf page and never splits a node
// of four elements or fewer, so four chunks with their keys (8 bytes) and element headers (16)
// and the page header (16) must fit one page: 16 + 4·(24 + pageSize/4 − 64) = pageSize − 144.
// 960 bytes for bbolt's default 4 KiB page. TestBaseChunksFitPages checks it with bbolt's own
// page statistics.
func baseChunkSize(pageSize int) int { return pageSize/4 - 64 }

// chunkKey is the base bucket's key of chunk i.
func chunkKey(i uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), i) }

// baseSum is the value of meta base_sum: the base's length in bytes, 8 bytes big endian, then
// its CRC-32C (Castagnoli, as records use), 4 bytes big endian.
func baseSum(base []byte) []byte {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 12), uint64(len(base)))
	return binary.BigEndian.AppendUint32(v, crc32.Checksum(base, castagnoli))
}

// readBase returns the base of a format-3 log (nil when there is none), or, when keep is false,
// only checks it: chunks numbered 0, 1, … without a gap, none larger than baseChunkSize, as many
// bytes as base_sum says and with its CRC-32C. The error names what is wrong; callers make it a
// *CorruptError. The returned slice is the caller's, not bbolt's.
func readBase(tx *bolt.Tx, keep bool) ([]byte, error) {
	bk, m := tx.Bucket(bucketBase), tx.Bucket(bucketMeta)
	if bk == nil {
		return nil, errors.New("its base bucket is missing")
	}
	sum := m.Get(keyBaseSum)
	first, _ := bk.Cursor().First()
	switch {
	case sum == nil && first == nil:
		return nil, nil
	case sum == nil:
		return nil, errors.New("the compacted base is damaged: its chunks are stored but its length and checksum (meta base_sum) are missing")
	case len(sum) != 12:
		return nil, fmt.Errorf("the compacted base is damaged: its length and checksum (meta base_sum) %x are not 12 bytes", sum)
	}
	size := binary.BigEndian.Uint64(sum)
	if size > uint64(tx.Size()) {
		return nil, fmt.Errorf("the compacted base is damaged: its length (meta base_sum) says %d bytes, more than the file holds (%d)", size, tx.Size())
	}
	var base []byte
	if keep {
		base = make([]byte, 0, size)
	}
	var (
		maxChunk = baseChunkSize(tx.DB().Info().PageSize)
		crc      uint32
		n        uint64 // bytes read
		next     uint64 // index of the chunk expected next
	)
	c := bk.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		switch {
		case len(k) != 8:
			return nil, fmt.Errorf("the compacted base is damaged: chunk key %x is not an 8-byte index", k)
		case binary.BigEndian.Uint64(k) != next:
			return nil, fmt.Errorf("the compacted base is damaged: chunk %d is missing (the next chunk stored is %d)", next, binary.BigEndian.Uint64(k))
		case v == nil:
			return nil, fmt.Errorf("the compacted base is damaged: chunk %d is a bucket, not a value", next)
		case len(v) > maxChunk:
			return nil, fmt.Errorf("the compacted base is damaged: chunk %d has %d bytes, more than the %d a chunk is written with", next, len(v), maxChunk)
		case len(v) == 0:
			return nil, fmt.Errorf("the compacted base is damaged: chunk %d is empty", next)
		}
		crc = crc32.Update(crc, castagnoli, v)
		n += uint64(len(v))
		if n > size {
			return nil, fmt.Errorf("the compacted base is damaged: its chunks hold more than the %d bytes its length (meta base_sum) says", size)
		}
		if keep {
			base = append(base, v...)
		}
		next++
	}
	if n != size {
		return nil, fmt.Errorf("the compacted base is damaged: its %d chunks hold %d bytes, its length (meta base_sum) says %d: chunks are missing", next, n, size)
	}
	if stored := binary.BigEndian.Uint32(sum[8:]); stored != crc {
		return nil, fmt.Errorf("the compacted base is damaged: checksum mismatch (stored CRC-32C %08x, computed %08x): its bytes changed after they were written", stored, crc)
	}
	if !keep {
		return nil, nil
	}
	return base, nil
}

// writeBase makes base the base of a format-3 log, in chunks of baseChunkSize (nil: no base):
// a chunk whose bytes are stored already is left alone, so an unchanged base writes nothing,
// and every key after the last chunk is deleted. bbolt keeps the values put until the commit:
// base must not change before. It returns how many chunks the base has.
func writeBase(tx *bolt.Tx, base []byte) (int, error) {
	bk, m := tx.Bucket(bucketBase), tx.Bucket(bucketMeta)
	bk.FillPercent = 1.0 // the keys are sequential: full pages
	size := baseChunkSize(tx.DB().Info().PageSize)
	var n uint64
	for off := 0; off < len(base); off += size {
		chunk := base[off:min(off+size, len(base))]
		k := chunkKey(n)
		if !bytes.Equal(bk.Get(k), chunk) {
			if err := bk.Put(k, chunk); err != nil {
				return 0, err
			}
		}
		n++
	}
	var doomed [][]byte
	c := bk.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) != 8 || binary.BigEndian.Uint64(k) >= n {
			doomed = append(doomed, bytes.Clone(k))
		}
	}
	for _, k := range doomed {
		if err := bk.Delete(k); err != nil {
			return 0, err
		}
	}
	if base == nil {
		return 0, m.Delete(keyBaseSum)
	}
	if sum := baseSum(base); !bytes.Equal(m.Get(keyBaseSum), sum) {
		if err := m.Put(keyBaseSum, sum); err != nil {
			return 0, err
		}
	}
	return int(n), nil
}

// migrateBase turns a format-2 log into format 3 in one transaction: the base moves from meta
// base into chunks of the base bucket, and the marker becomes 3. An error leaves the file as it
// was, still format 2, and the next start migrates it.
func (b *Bolt) migrateBase() error {
	start := time.Now()
	var size, chunks int
	err := b.db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if _, err := tx.CreateBucketIfNotExists(bucketBase); err != nil {
			return err
		}
		if v := m.Get(keyBase); v != nil {
			base := bytes.Clone(v) // v is bbolt's, and m.Delete below frees its page
			size = len(base)
			var err error
			if chunks, err = writeBase(tx, base); err != nil {
				return err
			}
			if err := m.Delete(keyBase); err != nil {
				return err
			}
		}
		if err := m.Put(keyFormat, []byte{3}); err != nil { // what this makes, whatever storeFormat is
			return err
		}
		// What the file holds now must read back as format 3 does, or nothing is committed.
		return checkExpected(tx, 3)
	})
	if err != nil {
		if errors.As(err, new(*CorruptError)) {
			return err
		}
		state := "the file is unchanged, still format 2, and the next start migrates it"
		if isFull(err) {
			state = "the migration needs free disk space of about twice the compacted base; " + state
		}
		return fmt.Errorf("cannot migrate deployment log %s to store format 3: %w (%s; see store/README.md)", b.path, err, state)
	}
	level.Info(b.logger).Log("msg", "Migrated deployment log to store format 3: the compacted base is kept in page-sized chunks",
		"path", b.path, "base_bytes", size, "chunks", chunks, "duration", time.Since(start))
	return nil
}
