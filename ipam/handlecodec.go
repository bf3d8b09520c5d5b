package ipam

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Handle records are written on every assignment, so they use a small
// binary encoding rather than JSON:
//
//	version=1 | updated: flag byte (0 zero time, 1 set), then unix seconds
//	(varint) and nanoseconds (uvarint) | n (uvarint) | n × (block CIDR
//	string: uvarint length + bytes, count: varint)
//
// Entries are sorted by CIDR string, so equal records encode equally.
// Records in the JSON form (first byte '{') are still read.
const handleCodecVersion = 1

func appendHandleTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// encodeNewHandle encodes a record holding n allocations in block.
func encodeNewHandle(block netip.Prefix, n int, updated time.Time) []byte {
	b := make([]byte, 0, 64)
	b = append(b, handleCodecVersion)
	b = appendHandleTime(b, updated)
	b = binary.AppendUvarint(b, 1)
	at := len(b)
	b = append(b, 0)
	b = block.AppendTo(b)
	b[at] = byte(len(b) - at - 1) // a CIDR string is shorter than 128 bytes
	return binary.AppendVarint(b, int64(n))
}

func encodeHandle(h *handleRecord) []byte {
	keys := make([]string, 0, len(h.Blocks))
	for k := range h.Blocks {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b := make([]byte, 0, 16+len(keys)*24)
	b = append(b, handleCodecVersion)
	b = appendHandleTime(b, h.Updated)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(b, k)
		b = binary.AppendVarint(b, int64(h.Blocks[k]))
	}
	return b
}

var errCorruptHandle = fmt.Errorf("corrupt handle record")

// decodeHandle decodes a handle record (binary, or the JSON form). Blocks
// is never nil.
func decodeHandle(b []byte) (handleRecord, error) {
	var h handleRecord
	if len(b) > 0 && b[0] == '{' {
		err := json.Unmarshal(b, &h)
		if h.Blocks == nil {
			h.Blocks = map[string]int{}
		}
		return h, err
	}
	if len(b) < 2 || b[0] != handleCodecVersion {
		return h, fmt.Errorf("%w: unknown version", errCorruptHandle)
	}
	d := &decoder{b: b[2:]}
	switch b[1] {
	case 0:
	case 1:
		sec := d.varint("updated")
		nsec := d.uvarint("updated", 999_999_999)
		if d.err == nil {
			h.Updated = time.Unix(sec, int64(nsec)).UTC()
		}
	default:
		return h, fmt.Errorf("%w: updated", errCorruptHandle)
	}
	n := d.uvarint("blocks", 1<<20)
	h.Blocks = make(map[string]int, min(n, 64))
	for range n {
		k := string(d.bytes("block", d.uvarint("block", 1<<10))) // a copy: b may be a view
		h.Blocks[k] = int(d.varint("count"))
		if d.err != nil {
			break
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return handleRecord{}, fmt.Errorf("%w: %v", errCorruptHandle, d.err)
	}
	return h, nil
}

// getHandle reads a handle record.
func (a *IPAM) getHandle(ctx context.Context, handle string) (handleRecord, int64, error) {
	key := handleKey(handle)
	kv, err := a.s.Get(ctx, key)
	if err != nil {
		return handleRecord{}, 0, err
	}
	h, err := decodeHandle(kv.Value)
	if err != nil {
		return handleRecord{}, 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return h, kv.Revision, nil
}

// modifyHandle is modifyJSON for handle records.
func (a *IPAM) modifyHandle(ctx context.Context, handle string, fn func(h *handleRecord, exists bool) (edit, error)) error {
	key := handleKey(handle)
	return a.modify(ctx, key, func(cur []byte) ([]byte, bool, error) {
		h := handleRecord{Blocks: map[string]int{}}
		if cur != nil {
			var err error
			if h, err = decodeHandle(cur); err != nil {
				return nil, false, fmt.Errorf("decode %s: %w", key, err)
			}
		}
		e, err := fn(&h, cur != nil)
		if err != nil || e == editSkip {
			return nil, false, err
		}
		if e == editDelete {
			return nil, true, nil
		}
		return encodeHandle(&h), false, nil
	})
}
