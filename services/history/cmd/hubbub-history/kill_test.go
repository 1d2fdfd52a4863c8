package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/hubbub-chat/hubbub/services/history/internal/ingest"
	"github.com/hubbub-chat/hubbub/services/history/internal/store"
	"github.com/hubbub-chat/hubbub/services/history/pgtest"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// TestSIGKILL runs hubbub-history as a subprocess while publishers keep
// posting to several rooms, SIGKILLs it mid-ingest several times,
// restarts it, and then proves that every acknowledged publish is stored
// exactly once and that the rooms table counts match.
func TestSIGKILL(t *testing.T) {
	bin := buildBinary(t)
	cases := []struct {
		name string
		env  func(t *testing.T) (env []string, driver, dsn string)
	}{
		{"sqlite", func(t *testing.T) ([]string, string, string) {
			dir := t.TempDir()
			return []string{"HUBBUB_DATA_DIR=" + dir, "HUBBUB_DATABASE_URL="}, "sqlite", "file:" + filepath.ToSlash(store.SQLitePath(dir))
		}},
		{"postgres", func(t *testing.T) ([]string, string, string) {
			url, _ := pgtest.Database(t)
			return []string{"HUBBUB_DATABASE_URL=" + url}, "pgx", url
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dbEnv, driver, dsn := tc.env(t)
			srv := natstest.Start(t)
			env := append([]string{
				"HUBBUB_NATS_URL=" + srv.URL(),
				"HUBBUB_HISTORY_BATCH_SIZE=64",
				"HUBBUB_HISTORY_BATCH_WAIT=5ms",
				// Messages the killed process held are redelivered after AckWait.
				"HUBBUB_HISTORY_ACK_WAIT=2s",
			}, dbEnv...)
			nc, err := nats.Connect(srv.URL())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := provision.Ensure(ctx, js, provision.Config{}); err != nil {
				t.Fatal(err)
			}

			pub := startPublishers(ctx, js, 4, []string{"general", "engineering", "random", "ops", "design", "sales"})
			const kills = 3
			floor := uint64(0)
			for i := range kills {
				p := startProcess(t, bin, env...)
				// Kill only once this incarnation has stored something of
				// its own: it is then mid-ingest (publishers never pause).
				target := floor + 200
				poll(t, func() error {
					f, err := ackFloor(ctx, js)
					if err != nil {
						return err
					}
					if f < target {
						return fmt.Errorf("kill %d: ack floor %d, waiting for %d", i, f, target)
					}
					floor = f
					return nil
				})
				if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				err := <-p.exited
				p.exited <- err
				var ee *exec.ExitError
				if !errors.As(err, &ee) {
					t.Fatalf("kill %d: exit %v, want killed by SIGKILL", i, err)
				}
				if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
					t.Fatalf("kill %d: exit %v, want killed by SIGKILL", i, err)
				}
				t.Logf("kill %d: killed at ack floor %d, %d acked so far", i, floor, pub.count())
			}
			acked := pub.stop(t)

			last := startProcess(t, bin, env...)
			info, err := js.Stream(ctx, subjects.Stream)
			if err != nil {
				t.Fatal(err)
			}
			si, err := info.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			lastSeq := si.State.LastSeq
			if si.State.Msgs != uint64(len(acked)) {
				t.Fatalf("stream holds %d messages, %d were acked", si.State.Msgs, len(acked))
			}
			poll(t, func() error {
				ci, err := consumerInfo(ctx, js)
				if err != nil {
					return err
				}
				if ci.AckFloor.Stream != lastSeq || ci.NumPending != 0 || ci.NumAckPending != 0 {
					return fmt.Errorf("consumer ack floor %d of %d, pending %d, ack pending %d",
						ci.AckFloor.Stream, lastSeq, ci.NumPending, ci.NumAckPending)
				}
				return nil
			})
			if err := last.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if err := <-last.exited; err != nil {
				t.Fatalf("exit after SIGTERM: %v", err)
			}
			last.exited <- nil
			checkStoredOnce(t, driver, dsn, acked)
		})
	}
}

// publishers post continuously and record every acknowledged message.
type publishers struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	acked  map[uint64]string // id -> room
	errs   []error
}

func startPublishers(ctx context.Context, js jetstream.JetStream, n int, rooms []string) *publishers {
	ctx, cancel := context.WithCancel(ctx)
	p := &publishers{cancel: cancel, acked: map[uint64]string{}}
	for w := range n {
		p.wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				room := rooms[(w+i)%len(rooms)]
				cid := fmt.Sprintf("w%d-%d", w, i)
				data, _ := json.Marshal(wire.Post{Room: room, User: "user" + strconv.Itoa(w), Body: "message " + cid,
					Kind: wire.KindMessage, TS: time.Now().UnixMilli(), CID: cid})
				pctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				ack, err := js.Publish(pctx, subjects.Room(room), data, jetstream.WithMsgID(room+"/user"+strconv.Itoa(w)+"/"+cid))
				cancel()
				p.mu.Lock()
				if err != nil {
					p.errs = append(p.errs, err)
				} else {
					p.acked[ack.Sequence] = room
				}
				p.mu.Unlock()
			}
		})
	}
	return p
}

func (p *publishers) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acked)
}

// stop ends publishing and returns the acknowledged messages. Every
// publish must have been acknowledged: NATS stays up in this test.
func (p *publishers) stop(t *testing.T) map[uint64]string {
	t.Helper()
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.errs) > 0 {
		t.Fatalf("%d publishes failed, first: %v", len(p.errs), p.errs[0])
	}
	return p.acked
}

func consumerInfo(ctx context.Context, js jetstream.JetStream) (*jetstream.ConsumerInfo, error) {
	cons, err := js.Consumer(ctx, subjects.Stream, ingest.Durable)
	if err != nil {
		return nil, err
	}
	return cons.Info(ctx)
}

func ackFloor(ctx context.Context, js jetstream.JetStream) (uint64, error) {
	ci, err := consumerInfo(ctx, js)
	if err != nil {
		return 0, err
	}
	return ci.AckFloor.Stream, nil
}

// checkStoredOnce reads the database directly: each acknowledged id must
// be stored exactly once (rows counted per id), nothing else stored, and
// each room's summary must count its messages and name its newest one.
func checkStoredOnce(t *testing.T, driver, dsn string, acked map[uint64]string) {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	ctx := context.Background()

	rows, err := db.QueryContext(ctx, `SELECT id, room, count(*) FROM messages GROUP BY id, room`)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[uint64]int{}
	for rows.Next() {
		var (
			id   int64
			room string
			n    int
		)
		if err := rows.Scan(&id, &room, &n); err != nil {
			t.Fatal(err)
		}
		if want, ok := acked[uint64(id)]; !ok || want != room {
			t.Errorf("stored id %d in room %q was not acked for that room (acked room %q)", id, room, want)
		}
		stored[uint64(id)] += n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	wantRooms := map[string]struct {
		n    int64
		last uint64
	}{}
	missing := 0
	for id, room := range acked {
		if n := stored[id]; n != 1 {
			if n == 0 {
				missing++
			} else {
				t.Errorf("id %d stored %d times", id, n)
			}
		}
		w := wantRooms[room]
		w.n++
		w.last = max(w.last, id)
		wantRooms[room] = w
	}
	if missing > 0 {
		t.Errorf("%d of %d acked messages are not stored", missing, len(acked))
	}

	rows, err = db.QueryContext(ctx, `SELECT room, message_count, last_id FROM rooms`)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for rows.Next() {
		var (
			room        string
			count, last int64
		)
		if err := rows.Scan(&room, &count, &last); err != nil {
			t.Fatal(err)
		}
		seen++
		w := wantRooms[room]
		if count != w.n || uint64(last) != w.last {
			t.Errorf("room %s: message_count %d last_id %d, want %d and %d", room, count, last, w.n, w.last)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if seen != len(wantRooms) {
		t.Errorf("rooms table has %d rooms, want %d", seen, len(wantRooms))
	}
	t.Logf("%d acked messages in %d rooms, each stored exactly once", len(acked), len(wantRooms))
}
