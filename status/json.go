package status

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// pageJSON is a Page whose components the model has already encoded. Its Components field, less
// nested than the Page's, is the one encoding/json writes, and the last: renderJSON encodes the
// rest with an empty list, then writes the encoded components into it. (Handing encoding/json
// the encoded components as json.RawMessage would have it re-validate all of them, which costs
// more than encoding them afresh.)
type pageJSON struct {
	*Page
	Components emptyList `json:"components"`
}

type emptyList struct{}

func (emptyList) MarshalJSON() ([]byte, error) { return []byte("[]"), nil }

func renderJSON(buf *bytes.Buffer, m *model, p *Page) error {
	start := buf.Len()
	if err := json.NewEncoder(buf).Encode(pageJSON{Page: p}); err != nil {
		return err
	}
	const end = "[]}\n"
	if !bytes.HasSuffix(buf.Bytes()[start:], []byte(end)) {
		return fmt.Errorf("status: the JSON page does not end with its components list")
	}
	buf.Truncate(buf.Len() - len(end))
	buf.WriteByte('[')
	for i, c := range p.Components {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString(m.raw[m.index[c]])
	}
	buf.WriteString("]}\n")
	return nil
}
