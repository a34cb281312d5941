package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Records are stored in a small binary encoding rather than JSON: the whole log is decoded at
// every start, and decoding varints and length-prefixed strings is several times faster than
// encoding/json's reflection, with records about half the size (BenchmarkDecodeRecord measures
// both). The first byte is the encoding version so that a later layout can be added beside this
// one; fields follow in a fixed order:
//
//	version(1) key org pipeline component environment state build_id web_url commit version
//	build_number(varint) created_at started_at finished_at lead_time(8) approval_wait(8)
//
// Strings are uvarint length + bytes; times are varint Unix seconds + uvarint nanoseconds, read
// back in UTC (the zero time round-trips); floats are IEEE-754 bits, little endian.
const recordEncodingV1 = 1

// appendRecord appends the encoding of r to dst.
func appendRecord(dst []byte, r *Record) []byte {
	dst = append(dst, recordEncodingV1)
	for _, s := range [...]string{r.Key, r.Organization, r.Pipeline, r.Component, r.Environment,
		r.State, r.BuildID, r.WebURL, r.Commit, r.Version} {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	dst = binary.AppendVarint(dst, int64(r.BuildNumber))
	for _, t := range [...]time.Time{r.CreatedAt, r.StartedAt, r.FinishedAt} {
		dst = binary.AppendVarint(dst, t.Unix())
		dst = binary.AppendUvarint(dst, uint64(t.Nanosecond()))
	}
	dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(r.LeadTimeSeconds))
	dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(r.ApprovalWaitSeconds))
	return dst
}

var errShortRecord = errors.New("record is truncated")

// decoder reads one encoded record; the first error sticks and later reads return zero values,
// so decodeRecord checks once at the end.
type decoder struct {
	buf []byte
	err error
	in  interner
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.err = errShortRecord
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.buf)
	if n <= 0 {
		d.err = errShortRecord
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.buf)) {
		d.err = errShortRecord
		return nil
	}
	b := d.buf[:n]
	d.buf = d.buf[n:]
	return b
}

// label copies the bytes (the buffer is bbolt's memory map, valid only inside the transaction)
// and shares one string per distinct value: organization, pipeline, component, environment,
// state and version repeat across millions of records.
func (d *decoder) label(b []byte) string { return d.in.intern(b) }

// own4 copies four byte slices into one allocation and returns them as strings: one
// allocation per record instead of one per field is much of the replay's speed.
func own4(a, b, c, d []byte) (string, string, string, string) {
	var sb strings.Builder
	sb.Grow(len(a) + len(b) + len(c) + len(d))
	sb.Write(a)
	sb.Write(b)
	sb.Write(c)
	sb.Write(d)
	all := sb.String()
	i, j, k := len(a), len(a)+len(b), len(a)+len(b)+len(c)
	return all[:i], all[i:j], all[j:k], all[k:]
}

func (d *decoder) time() time.Time {
	sec := d.varint()
	nsec := d.uvarint()
	if d.err != nil {
		return time.Time{}
	}
	if nsec >= 1e9 {
		d.err = fmt.Errorf("nanoseconds %d out of range", nsec)
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

func (d *decoder) float() float64 {
	if d.err != nil {
		return 0
	}
	if len(d.buf) < 8 {
		d.err = errShortRecord
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(d.buf))
	d.buf = d.buf[8:]
	return v
}

// decodeRecord decodes data into r. It never panics, whatever data holds.
func (d *decoder) decodeRecord(data []byte, r *Record) error {
	if len(data) == 0 {
		return errShortRecord
	}
	if data[0] != recordEncodingV1 {
		return fmt.Errorf("unknown record encoding %d (this binary reads %d; was the log written by a newer version?)", data[0], recordEncodingV1)
	}
	d.buf, d.err = data[1:], nil
	var f [10][]byte // the strings, in encoding order
	for i := range f {
		f[i] = d.bytes()
	}
	if d.err != nil {
		return d.err
	}
	// Key, BuildID, WebURL and Commit differ in every record: one allocation for the four.
	key, id, url, commit := own4(f[0], f[6], f[7], f[8])
	*r = Record{
		Key:          key,
		Organization: d.label(f[1]),
		Pipeline:     d.label(f[2]),
		Component:    d.label(f[3]),
		Environment:  d.label(f[4]),
		State:        d.label(f[5]),
		BuildID:      id,
		WebURL:       url,
		Commit:       commit,
		Version:      d.label(f[9]),
	}
	bn := d.varint()
	if bn < math.MinInt32 || bn > math.MaxInt32 {
		// Build numbers are small; a huge one means a damaged value, not a real build.
		d.err = fmt.Errorf("build number %d out of range", bn)
	}
	r.BuildNumber = int(bn)
	r.CreatedAt = d.time()
	r.StartedAt = d.time()
	r.FinishedAt = d.time()
	r.LeadTimeSeconds = d.float()
	r.ApprovalWaitSeconds = d.float()
	if d.err != nil {
		return d.err
	}
	if len(d.buf) != 0 {
		return fmt.Errorf("%d unexpected bytes after the record", len(d.buf))
	}
	return nil
}

// interner returns one shared string per distinct byte sequence. It stops growing at a bound so
// that a log full of distinct values (versions, say) cannot make it hold everything twice.
type interner map[string]string

const maxInterned = 1 << 14

func (in *interner) intern(b []byte) string {
	if *in == nil {
		*in = make(interner)
	}
	if s, ok := (*in)[string(b)]; ok { // no allocation: the compiler special-cases this lookup
		return s
	}
	s := string(b)
	if len(*in) < maxInterned {
		(*in)[s] = s
	}
	return s
}
