package nftables_test

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	"sigs.k8s.io/knftables"

	"github.com/tabbynet/tabby/services"
	snft "github.com/tabbynet/tabby/services/nftables"
	st "github.com/tabbynet/tabby/services/servicestest"
)

// capture is a slog.Handler keeping every record's level, message and
// attributes.
type capture struct {
	mu   sync.Mutex
	recs []logRecord
}

type logRecord struct {
	level slog.Level
	msg   string
	attrs map[string]any
}

func (c *capture) Enabled(context.Context, slog.Level) bool { return true }
func (c *capture) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *capture) WithGroup(string) slog.Handler            { return c }
func (c *capture) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{level: r.Level, msg: r.Message, attrs: map[string]any{}}
	r.Attrs(func(a slog.Attr) bool { rec.attrs[a.Key] = a.Value.Any(); return true })
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs = append(c.recs, rec)
	return nil
}

// take returns the records since the last take.
func (c *capture) take() []logRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.recs
	c.recs = nil
	return out
}

// failing is a knftables.Fake whose Run fails while fail is set.
type failing struct {
	*knftables.Fake
	fail bool
}

func (f *failing) Run(ctx context.Context, tx *knftables.Transaction) error {
	if f.fail {
		return errors.New("injected failure")
	}
	return f.Fake.Run(ctx, tx)
}

func TestProxierLogs(t *testing.T) {
	logs, trLogs := &capture{}, &capture{}
	tr := services.NewTracker(services.TrackerConfig{NodeName: "node-a"}, slog.New(trLogs))
	nft := &failing{Fake: knftables.NewFake(knftables.IPv4Family, snft.DefaultTable)}
	p, err := snft.New(nft, tr,
		snft.Config{Family: knftables.IPv4Family, NodeIPs: []netip.Addr{nodeIP}}, snft.WithLogger(slog.New(logs)))
	require.NoError(t, err)

	// Each step runs on the one proxier, in order.
	steps := []struct {
		name  string
		setup func()
		err   bool
		want  []logRecord // level, message and the attributes named
	}{
		{name: "first sync rewrites the table", setup: func() {},
			want: []logRecord{{slog.LevelInfo, "rewrote the whole nftables table", map[string]any{"table": snft.DefaultTable, "servicePorts": int64(0)}}}},
		{name: "one new service: incremental", setup: func() {
			tr.OnServiceUpdate(st.Service("default", "web", "10.96.7.1", st.Port("http", v1.ProtocolTCP, 80, 0)))
		}, want: []logRecord{{slog.LevelDebug, "synced nftables table", map[string]any{"changedServicePorts": int64(1)}}}},
		{name: "nothing changed: nothing logged", setup: func() {}},
		{name: "failed transaction: debug only", setup: func() {
			tr.OnServiceUpdate(st.Service("default", "dns", "10.96.7.2", st.Port("dns", v1.ProtocolUDP, 53, 0)))
			nft.fail = true
		}, err: true,
			want: []logRecord{{slog.LevelDebug, "nftables transaction failed; the next Sync rewrites the whole table", map[string]any{"full": false}}}},
		{name: "after a failure: full rewrite", setup: func() {},
			want: []logRecord{{slog.LevelInfo, "rewrote the whole nftables table", map[string]any{"servicePorts": int64(2)}}}},
		{name: "destination clash: logged by the Tracker only", setup: func() {
			tr.OnServiceUpdate(st.Service("default", "web2", "10.96.7.1", st.Port("http", v1.ProtocolTCP, 80, 0)))
		}}, // the loser has no destination left: nothing to write
	}
	for _, s := range steps {
		nft.fail = false
		s.setup()
		err := p.Sync(context.Background())
		if s.err {
			require.Error(t, err, s.name)
		} else {
			require.NoError(t, err, s.name)
		}
		got := logs.take()
		require.Len(t, got, len(s.want), "%s: %+v", s.name, got)
		for i, w := range s.want {
			assert.Equal(t, w.level, got[i].level, s.name)
			assert.Equal(t, w.msg, got[i].msg, s.name)
			for k, v := range w.attrs {
				assert.Equal(t, v, got[i].attrs[k], "%s: %s", s.name, k)
			}
		}
	}
	var clash int
	for _, r := range trLogs.take() {
		if r.msg == "dropping service destination" {
			clash++
		}
	}
	assert.Positive(t, clash, "the Tracker logs the clash")
}

func TestProxierNilLogger(t *testing.T) {
	_, tr, p := newFake(t, snft.WithLogger(nil))
	tr.OnServiceUpdate(st.Service("default", "web", "10.96.7.1", st.Port("http", v1.ProtocolTCP, 80, 0)))
	require.NotPanics(t, func() { require.NoError(t, p.Sync(context.Background())) })
}
