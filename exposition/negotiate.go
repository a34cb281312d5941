package exposition

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/common/expfmt"
)

// offered are the formats the handler serves, in its order of preference for Accept clauses of
// equal weight: promhttp's OpenMetrics-enabled list without the protobuf text formats, which are
// for debugging and would each need a cached body. A scraper that accepts none of them, or sends
// no Accept, gets text 0.0.4 (NegotiateAccept's fallback).
var offered = []expfmt.Format{
	expfmt.FmtOpenMetrics_1_0_0,
	expfmt.FmtOpenMetrics_0_0_1,
	expfmt.FmtProtoDelim,
	expfmt.FmtText,
}

// negotiate returns the format to answer r in, with the escaping parameter NegotiateAccept
// derives from the Accept clause: the Content-Type promhttp would send.
func negotiate(r *http.Request) expfmt.Format {
	return expfmt.NegotiateAccept(r.Header, offered...)
}

// acceptsGzip reports whether r's Accept-Encoding allows gzip (explicitly, or through "*") with
// a weight above zero and not below identity's. Anything else is answered uncompressed, which
// every client accepts.
func acceptsGzip(r *http.Request) bool {
	gzipQ, identityQ, starQ := -1.0, -1.0, -1.0
	for _, v := range r.Header.Values("Accept-Encoding") {
		for part := range strings.SplitSeq(v, ",") {
			coding, params, _ := strings.Cut(part, ";")
			q := 1.0
			for p := range strings.SplitSeq(params, ";") {
				name, value, ok := strings.Cut(strings.TrimSpace(p), "=")
				if ok && strings.EqualFold(strings.TrimSpace(name), "q") {
					if f, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
						q = f
					}
				}
			}
			switch strings.ToLower(strings.TrimSpace(coding)) {
			case "gzip", "x-gzip":
				gzipQ = q
			case "identity":
				identityQ = q
			case "*":
				starQ = q
			}
		}
	}
	if gzipQ < 0 {
		gzipQ = starQ
	}
	return gzipQ > 0 && gzipQ >= identityQ
}
