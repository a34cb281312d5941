// Package logging builds the exporter's go-kit logger from --log.level and --log.format, and the
// *slog.Logger that exporter-toolkit needs, bridged onto the same go-kit output so that both
// halves write one format with the same keys.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	sloggokit "github.com/tjhop/slog-gokit"
)

// Config holds the two logging flags.
type Config struct {
	Level  string
	Format string
}

// AddFlags registers --log.level and --log.format with the names and values Prometheus exporters use.
func AddFlags(a *kingpin.Application, c *Config) {
	a.Flag("log.level", "Only log messages with the given severity or above. One of: [debug, info, warn, error]").
		Default("info").EnumVar(&c.Level, "debug", "info", "warn", "error")
	a.Flag("log.format", "Output format of log messages. One of: [logfmt, json]").
		Default("logfmt").EnumVar(&c.Format, "logfmt", "json")
}

const timeLayout = "2006-01-02T15:04:05.000Z07:00"

var timestamp = log.TimestampFormat(func() time.Time { return time.Now().UTC() }, timeLayout)

// New returns the application logger and a *slog.Logger writing through it.
func New(c Config, w io.Writer) (log.Logger, *slog.Logger, error) {
	var base log.Logger
	sw := log.NewSyncWriter(w)
	switch c.Format {
	case "", "logfmt":
		base = log.NewLogfmtLogger(sw)
	case "json":
		base = log.NewJSONLogger(sw)
	default:
		return nil, nil, fmt.Errorf("unknown log format %q: use logfmt or json", c.Format)
	}
	var allow level.Option
	var slogLevel slog.Level
	switch c.Level {
	case "debug":
		allow, slogLevel = level.AllowDebug(), slog.LevelDebug
	case "", "info":
		allow, slogLevel = level.AllowInfo(), slog.LevelInfo
	case "warn":
		allow, slogLevel = level.AllowWarn(), slog.LevelWarn
	case "error":
		allow, slogLevel = level.AllowError(), slog.LevelError
	default:
		return nil, nil, fmt.Errorf("unknown log level %q: use debug, info, warn or error", c.Level)
	}
	// Caller(5), not DefaultCaller: level.NewFilter adds stack frames between the call site and here.
	logger := level.NewFilter(log.With(base, "ts", timestamp, "caller", log.Caller(5)), allow)

	// The slog half gets the undecorated base logger (slog-gokit adds caller itself) with slog's
	// "time" key renamed to "ts" in the same layout, and the same level filter.
	slogBase := level.NewFilter(renameSlogTime(base), allow)
	return logger, slog.New(sloggokit.NewGoKitHandler(slogBase, slogLevel)), nil
}

// renameSlogTime rewrites slog's time=<time.Time> pair into ts=<layout>, as the go-kit half writes it.
func renameSlogTime(next log.Logger) log.Logger {
	return log.LoggerFunc(func(kv ...any) error {
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i] == slog.TimeKey {
				if t, ok := kv[i+1].(time.Time); ok {
					kv[i], kv[i+1] = "ts", t.UTC().Format(timeLayout)
				}
			}
		}
		return next.Log(kv...)
	})
}
