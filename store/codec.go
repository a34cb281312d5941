package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
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
//	version key org pipeline component environment state build_id web_url commit version
//	build_number(varint) created_at started_at finished_at lead_time(8) approval_wait(8)
//	[deployed_by release_notes, version 3 only] [crc32c(4), versions 2 and 3]
//
// Strings are uvarint length + bytes; times are varint Unix seconds + uvarint nanoseconds, read
// back in UTC (the zero time round-trips); floats are IEEE-754 bits, little endian.
//
// Version 2, written for every record since store format 2, ends with the CRC-32C (Castagnoli)
// of every byte before it, little endian: bbolt checksums only its meta pages, so without it a
// changed byte inside a record (a state, a time) would be read back as a different deployment.
// Version 1 (format-1 logs; the migration re-encodes them) has no checksum and is still read.
//
// Version 3 is version 2 with two more strings before the checksum, DeployedBy and ReleaseNotes
// (personal data, kept only with --deployments.keep-people-and-notes). It is written only for a
// record that has either: a record without them is written as version 2, byte for byte as
// before, so with the option off nothing changes on disk and an older binary of store format 2
// still reads the log. The versions live side by side in one log (the store format stays 2).
const (
	recordEncodingV1 = 1
	recordEncodingV2 = 2
	recordEncodingV3 = 3
)

// castagnoli is the CRC-32C table; the polynomial has hardware support on amd64 and arm64.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendRecord appends the encoding of r to dst: version 3 when r has people or notes, else
// version 2.
func appendRecord(dst []byte, r *Record) []byte {
	start := len(dst)
	if r.DeployedBy == "" && r.ReleaseNotes == "" {
		dst = appendRecordFields(append(dst, recordEncodingV2), r)
	} else {
		dst = appendRecordFields(append(dst, recordEncodingV3), r)
		for _, s := range [...]string{r.DeployedBy, r.ReleaseNotes} {
			dst = binary.AppendUvarint(dst, uint64(len(s)))
			dst = append(dst, s...)
		}
	}
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// appendRecordFields appends the fields of r, the part versions 1 and 2 share.
func appendRecordFields(dst []byte, r *Record) []byte {
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
	// v3 is set by begin for a version-3 record: DeployedBy and ReleaseNotes follow the floats.
	v3 bool
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

// errChecksum is the error of a version-2 record whose bytes do not match their checksum.
var errChecksum = errors.New("checksum mismatch: the record's bytes changed after it was written")

// begin checks data's version and checksum and sets d.buf to its fields.
func (d *decoder) begin(data []byte) error {
	if len(data) == 0 {
		return errShortRecord
	}
	d.v3 = false
	switch data[0] {
	case recordEncodingV1:
		d.buf = data[1:]
	case recordEncodingV2, recordEncodingV3:
		if len(data) < 1+4 {
			return errShortRecord
		}
		body := data[:len(data)-4]
		if sum := binary.LittleEndian.Uint32(data[len(body):]); sum != crc32.Checksum(body, castagnoli) {
			return fmt.Errorf("%w (stored CRC-32C %08x, computed %08x)", errChecksum, sum, crc32.Checksum(body, castagnoli))
		}
		d.buf = body[1:]
		d.v3 = data[0] == recordEncodingV3
	default:
		return fmt.Errorf("unknown record encoding %d (this binary reads %d to %d; was the log written by a newer version?)", data[0], recordEncodingV1, recordEncodingV3)
	}
	d.err = nil
	return nil
}

// finishedAt decodes only the finish time of an encoded record, without allocating.
func (d *decoder) finishedAt(data []byte) (time.Time, error) {
	if err := d.begin(data); err != nil {
		return time.Time{}, err
	}
	for range 10 {
		d.bytes()
	}
	d.varint()
	d.time()
	d.time()
	t := d.time()
	return t, d.err
}

// check validates an encoded record as decodeRecord does, without allocating.
func (d *decoder) check(data []byte) error {
	if err := d.begin(data); err != nil {
		return err
	}
	for range 10 {
		d.bytes()
	}
	if bn := d.varint(); d.err == nil && (bn < math.MinInt32 || bn > math.MaxInt32) {
		return fmt.Errorf("build number %d out of range", bn)
	}
	for range 3 {
		d.time()
	}
	d.float()
	d.float()
	if d.v3 {
		d.bytes()
		d.bytes()
	}
	if d.err != nil {
		return d.err
	}
	if len(d.buf) != 0 {
		return fmt.Errorf("%d unexpected bytes after the record", len(d.buf))
	}
	return nil
}

// reencodeV1 turns a record in encoding 1 into encoding 2: the same fields, then the checksum.
func reencodeV1(v1 []byte) []byte {
	v2 := make([]byte, 0, len(v1)+4)
	v2 = append(append(v2, recordEncodingV2), v1[1:]...)
	return binary.LittleEndian.AppendUint32(v2, crc32.Checksum(v2, castagnoli))
}

// decodeRecord decodes data (either version) into r. It never panics, whatever data holds.
func (d *decoder) decodeRecord(data []byte, r *Record) error {
	if err := d.begin(data); err != nil {
		return err
	}
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
	if d.v3 {
		// Not interned: names and notes are few and not shared like labels.
		by, notes := d.bytes(), d.bytes()
		if d.err == nil {
			r.DeployedBy, r.ReleaseNotes = string(by), string(notes)
		}
	}
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
