// Package api serves the edge's HTTP API: the lobby, a room's messages and
// presence, posting, editing and deleting a message and reacting to one,
// and a room's live events as Server-Sent
// Events that resume gaplessly from Last-Event-ID.
package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/hubbub-chat/hubbub/services/edge/internal/admit"
	"github.com/hubbub-chat/hubbub/services/edge/internal/auth"
	"github.com/hubbub-chat/hubbub/services/edge/internal/nreq"
	"github.com/hubbub-chat/hubbub/services/edge/internal/session"
	"github.com/hubbub-chat/hubbub/shared/defaults"
	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Observer receives API events for metrics. Methods must not block.
type Observer interface {
	// ConnRefused counts a stream refused at a connection cap.
	ConnRefused(reason string)
}

// Pages answers the API's reads of the room log (pages.Log implements
// it: history, else the stream).
type Pages interface {
	// Lobby is the most recently active rooms.
	Lobby(ctx context.Context, req wire.LobbyRequest) (wire.LobbyReply, error)
	// Recent is a page of a room's messages before req.Before.
	Recent(ctx context.Context, req wire.RecentRequest) (wire.Page, error)
}

// Presence answers the API's reads of presence (registry.Presence
// implements it).
type Presence interface {
	// Counts is the online count of each room asked for.
	Counts(ctx context.Context, req wire.CountsRequest) (wire.CountsReply, error)
	// Roster is one page of a room's online users.
	Roster(ctx context.Context, req wire.RosterRequest) (wire.RosterReply, error)
}

// Config configures the API. Zero values take the defaults below.
type Config struct {
	// KeepAlive is the SSE comment interval.
	KeepAlive time.Duration
	// SSEQueue bounds the bytes queued to one SSE client; a client
	// further behind is disconnected and resumes with Last-Event-ID.
	SSEQueue int
	// LobbyLimit is the default number of lobby rooms.
	LobbyLimit int
	// WriteTimeout bounds one write to an SSE client; a client that does
	// not take its events in time is disconnected.
	WriteTimeout time.Duration
}

// Defaults for Config.
const (
	DefaultKeepAlive    = 30 * time.Second
	DefaultSSEQueue     = 1 << 20
	DefaultLobbyLimit   = 50
	DefaultWriteTimeout = 10 * time.Second
)

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	defaults.Positive(&c.KeepAlive, DefaultKeepAlive)
	defaults.Positive(&c.SSEQueue, DefaultSSEQueue)
	defaults.Positive(&c.LobbyLimit, DefaultLobbyLimit)
	defaults.Positive(&c.WriteTimeout, DefaultWriteTimeout)
	return c
}

// Deps are the API's collaborators; all but Gate and Origins are
// required.
type Deps struct {
	// Gate caps SSE streams with the edge's WebSockets (nil: no cap).
	Gate *admit.Gate
	// Origins decides the Origin of cookie-authenticated posts (nil:
	// same host only).
	Origins *auth.OriginChecker
	// Pages answers the lobby and message pages.
	Pages Pages
	// Presence answers online counts and rosters.
	Presence Presence
	// Sessions serves SSE streams and posts as clients of protocol v1:
	// the same quotas, limits, room rules and publish path as a
	// WebSocket (its Config.Limits bound bodies and pages here too).
	Sessions *session.Env
	// Auth authenticates every request.
	Auth auth.Authenticator
	// Log receives the API's warnings.
	Log *slog.Logger
	// Obs counts refused streams.
	Obs Observer
	// Done is closed when the edge drains: SSE streams end.
	Done <-chan struct{}
	// Reads keeps read marks and counts unread (nil: the lobby counts
	// none and PUT …/read answers 503).
	Reads Reads
}

// API serves the HTTP endpoints.
type API struct {
	cfg      Config
	pages    Pages
	roster   Presence
	sessions *session.Env
	authn    auth.Authenticator
	gate     *admit.Gate
	origins  *auth.OriginChecker
	log      *slog.Logger
	obs      Observer
	done     <-chan struct{}
	reads    Reads
}

// New returns the API.
func New(cfg Config, deps Deps) *API {
	origins := deps.Origins
	if origins == nil {
		origins = auth.NewOriginChecker(nil, nil)
	}
	return &API{
		cfg: cfg.WithDefaults(), pages: deps.Pages, roster: deps.Presence, sessions: deps.Sessions,
		authn: deps.Auth, gate: deps.Gate, origins: origins, log: deps.Log, obs: deps.Obs, done: deps.Done,
		reads: deps.Reads,
	}
}

// Register adds the API routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/lobby", a.lobby)
	mux.HandleFunc("GET /api/rooms/{room}/messages", a.messages)
	mux.HandleFunc("POST /api/rooms/{room}/messages", a.post)
	mux.HandleFunc("PATCH /api/rooms/{room}/messages/{id}", a.edit)
	mux.HandleFunc("DELETE /api/rooms/{room}/messages/{id}", a.delete)
	mux.HandleFunc("PUT /api/rooms/{room}/messages/{id}/reactions/{emoji}", a.react)
	mux.HandleFunc("DELETE /api/rooms/{room}/messages/{id}/reactions/{emoji}", a.react)
	mux.HandleFunc("GET /api/rooms/{room}/presence", a.presence)
	mux.HandleFunc("GET /api/rooms/{room}/events", a.events)
	mux.HandleFunc("PUT /api/rooms/{room}/read", a.read)
}

func (a *API) lobby(w http.ResponseWriter, r *http.Request) {
	id, ok := a.identity(w, r)
	if !ok {
		return
	}
	limit, ok := intParam(w, r, "limit", a.cfg.LobbyLimit, 1, 500)
	if !ok {
		return
	}
	lobby, err := a.pages.Lobby(r.Context(), wire.LobbyRequest{Limit: limit})
	if err != nil {
		a.fail(w, err)
		return
	}
	// A token restricted to some rooms sees only those.
	lobby.Rooms = slices.DeleteFunc(lobby.Rooms, func(rs wire.RoomSummary) bool { return !id.Allows(rs.Room) })
	if lobby.Rooms == nil {
		lobby.Rooms = []wire.RoomSummary{}
	}
	if len(lobby.Rooms) > 0 {
		rooms := make([]string, len(lobby.Rooms))
		for i, rs := range lobby.Rooms {
			rooms[i] = rs.Room
		}
		counts, err := a.roster.Counts(r.Context(), wire.CountsRequest{Rooms: rooms})
		if err != nil {
			a.log.Warn("lobby without online counts", "err", err)
		} else {
			for i := range lobby.Rooms {
				lobby.Rooms[i].Online = counts.Counts[lobby.Rooms[i].Room]
			}
		}
	}
	a.addUnread(r.Context(), id.User, lobby.Rooms)
	writeJSON(w, http.StatusOK, lobby)
}

func (a *API) messages(w http.ResponseWriter, r *http.Request) {
	room, _, ok := a.readableRoom(w, r)
	if !ok {
		return
	}
	before, err := uintParam(r, "before")
	if err != nil {
		writeError(w, http.StatusBadRequest, wire.Errorf(wire.CodeBadJSON, "before must be a message id"))
		return
	}
	maxPage := a.sessions.Config.Limits.MaxPage
	if maxPage <= 0 {
		maxPage = wire.DefaultMaxPage
	}
	limit, ok := intParam(w, r, "limit", wire.DefaultPage, 1, maxPage)
	if !ok {
		return
	}
	p, err := a.pages.Recent(r.Context(), wire.RecentRequest{Room: room, Before: before, Limit: limit})
	if err != nil {
		a.fail(w, err)
		return
	}
	if p.Items == nil {
		p.Items = []wire.Message{}
	}
	p.Room = room
	writeJSON(w, http.StatusOK, p)
}

func (a *API) presence(w http.ResponseWriter, r *http.Request) {
	room, _, ok := a.readableRoom(w, r)
	if !ok {
		return
	}
	limit, ok := intParam(w, r, "limit", 100, 1, 1000)
	if !ok {
		return
	}
	rr, err := a.roster.Roster(r.Context(), wire.RosterRequest{Room: room, After: r.URL.Query().Get("after"), Limit: limit})
	if err != nil {
		a.fail(w, err)
		return
	}
	if rr.Users == nil {
		rr.Users = []string{}
	}
	rr.Room = room
	writeJSON(w, http.StatusOK, rr)
}

// PostRequest is the body of POST /api/rooms/{room}/messages (ReplyTo:
// the id of the message answered, optional) and of PATCH
// /api/rooms/{room}/messages/{id} (an edit: Body, CID).
type PostRequest struct {
	Body    string `json:"body"`
	CID     string `json:"cid"`
	ReplyTo uint64 `json:"reply_to,omitempty"`
}

// MaxPostBytes bounds the body of a post request.
const MaxPostBytes = 64 << 10

func (a *API) post(w http.ResponseWriter, r *http.Request) {
	a.write(w, r, true, func(req PostRequest, _ uint64) wire.ClientFrame {
		return wire.ClientFrame{Type: wire.TypeMessage, Body: req.Body, CID: req.CID, ReplyTo: req.ReplyTo}
	})
}

func (a *API) edit(w http.ResponseWriter, r *http.Request) {
	a.write(w, r, true, func(req PostRequest, id uint64) wire.ClientFrame {
		return wire.ClientFrame{Type: wire.TypeEdit, ID: id, Body: req.Body, CID: req.CID}
	})
}

// delete deletes a message; its cid comes from the cid query parameter
// (generated when absent).
func (a *API) delete(w http.ResponseWriter, r *http.Request) {
	a.write(w, r, false, func(req PostRequest, id uint64) wire.ClientFrame {
		return wire.ClientFrame{Type: wire.TypeDelete, ID: id, CID: req.CID}
	})
}

// react gives (PUT) or takes back (DELETE) the path's emoji (path-escaped)
// on a message; the cid as for delete.
func (a *API) react(w http.ResponseWriter, r *http.Request) {
	on := r.Method == http.MethodPut
	a.write(w, r, false, func(req PostRequest, id uint64) wire.ClientFrame {
		return wire.ClientFrame{Type: wire.TypeReact, ID: id, Emoji: r.PathValue("emoji"), On: &on, CID: req.CID}
	})
}

// write serves every state change of a room's messages: it authenticates
// r, applies the CSRF rules to cookie authentication (sameSite; the JSON
// content type only where the request has a JSON body), reads the body
// (withBody) or the cid query parameter, builds the client frame with the
// path's message id and hands it to the session's one write path
// (session.Env.Write: the path of the same WebSocket frame). The answer is
// a wire.PostReply, or the refusal's status (Status).
func (a *API) write(w http.ResponseWriter, r *http.Request, withBody bool, build func(req PostRequest, id uint64) wire.ClientFrame) {
	id, ok := a.identity(w, r)
	if !ok {
		return
	}
	if id.Ambient {
		csrf := a.sameOrigin
		if withBody {
			csrf = a.sameSite
		}
		if !csrf(w, r) {
			return
		}
	}
	var msgID uint64
	if r.PathValue("id") != "" {
		n, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
		if err != nil || n == 0 {
			writeError(w, http.StatusBadRequest, wire.Errorf(wire.CodeInvalidID, "the path's id must be a message id"))
			return
		}
		msgID = n
	}
	var req PostRequest
	if withBody {
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxPostBytes))
		if err := dec.Decode(&req); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeError(w, http.StatusRequestEntityTooLarge, wire.Errorf(wire.CodeInvalidBody, "request body is over %d bytes", MaxPostBytes))
				return
			}
			writeError(w, http.StatusBadRequest, wire.Errorf(wire.CodeBadJSON, "body must be a JSON object {\"body\",\"cid\"}"))
			return
		}
	} else {
		req.CID = r.URL.Query().Get("cid")
	}
	if req.CID == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		req.CID = hex.EncodeToString(b[:])
	}
	f := build(req, msgID)
	f.Room = r.PathValue("room")
	// The path of the WebSocket frame: validation, room rule, budgets,
	// the target's rule, the bounded publish; its refusals map to
	// statuses.
	res, err := a.sessions.Write(r.Context(), id, f)
	var we *wire.Error
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, wire.PostReply{ID: res.ID, CID: req.CID, Duplicate: res.Duplicate})
	case errors.As(err, &we):
		writeRefusal(w, we)
	case errors.Is(err, context.Canceled):
		// the client went away; resending with the same cid is safe
	default:
		a.log.Warn(f.Type+" failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, wire.Errorf(wire.CodeUnavailable, "service unavailable; try again"))
	}
}

// Status is the HTTP status that answers a refusal with error code code,
// the code a WebSocket client would get in an error frame: 400 for bad
// input (invalid_emoji and invalid_id included), 403 forbidden, 404
// not_found, 429 rate_limited (and too_many_rooms), 503
// unavailable (a backing service, or the edge's bound on messages awaiting
// storage), 500 otherwise.
func Status(code string) int {
	switch code {
	case wire.CodeBadJSON, wire.CodeUnknownType, wire.CodeInvalidRoom, wire.CodeInvalidBody,
		wire.CodeInvalidCID, wire.CodeInvalidState, wire.CodeInvalidLimit,
		wire.CodeInvalidEmoji, wire.CodeInvalidID:
		return http.StatusBadRequest
	case wire.CodeForbidden:
		return http.StatusForbidden
	case wire.CodeNotFound:
		return http.StatusNotFound
	case wire.CodeRateLimited, wire.CodeTooManyRooms:
		return http.StatusTooManyRequests
	case wire.CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// writeRefusal answers a session's refusal, with Retry-After when the
// client should simply try again later.
func writeRefusal(w http.ResponseWriter, e *wire.Error) {
	status := Status(e.Code)
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeError(w, status, e)
}

// readableRoom checks a room read (messages, presence) by the rule every
// read path shares with join (guarantee 10): the request is authenticated
// and the token allows the room. It answers 400/401/403 itself.
func (a *API) readableRoom(w http.ResponseWriter, r *http.Request) (string, auth.Identity, bool) {
	room, ok := roomParam(w, r)
	if !ok {
		return "", auth.Identity{}, false
	}
	id, ok := a.identity(w, r)
	if !ok {
		return "", auth.Identity{}, false
	}
	if !id.Allows(room) {
		writeError(w, http.StatusForbidden, wire.Errorf(wire.CodeForbidden, "the token does not allow this room"))
		return "", auth.Identity{}, false
	}
	return room, id, true
}

// sameSite applies the CSRF rules to a state change with a JSON body
// authenticated by a cookie (which browsers attach to other sites'
// requests too): the Origin rule (sameOrigin), and the body must be
// declared JSON, which a cross-site form or a "simple" fetch cannot send
// without a CORS preflight. It answers 403/415 itself.
func (a *API) sameSite(w http.ResponseWriter, r *http.Request) bool {
	if !a.sameOrigin(w, r) {
		return false
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, wire.Errorf(wire.CodeBadJSON, "a cookie-authenticated post must have Content-Type: application/json"))
		return false
	}
	return true
}

// sameOrigin applies the Origin rule to a state change authenticated by
// a cookie: a browser's Origin must be allowed ("null" never is), and a
// cross-site request must say where it comes from. A request without a
// body (PUT, DELETE: never "simple", so a foreign page cannot send them
// without a CORS preflight) needs no more. It answers 403 itself.
func (a *API) sameOrigin(w http.ResponseWriter, r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" && !a.origins.AllowedOrigin(o, r.Host) {
		writeError(w, http.StatusForbidden, wire.Errorf(wire.CodeOriginRefused, "origin not allowed for a cookie-authenticated request"))
		return false
	}
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" && r.Header.Get("Origin") == "" {
		writeError(w, http.StatusForbidden, wire.Errorf(wire.CodeOriginRefused, "cross-site request refused"))
		return false
	}
	return true
}

// identity authenticates r, answering 401 on failure.
func (a *API) identity(w http.ResponseWriter, r *http.Request) (auth.Identity, bool) {
	id, err := a.authn.Authenticate(r)
	switch {
	case err == nil:
		return id, true
	case errors.Is(err, auth.ErrMissing):
		writeError(w, http.StatusUnauthorized, wire.Errorf(wire.CodeAuthRequired, "authentication required"))
	default:
		writeError(w, http.StatusUnauthorized, wire.Errorf(wire.CodeAuthInvalid, "invalid credentials"))
	}
	return auth.Identity{}, false
}

func (a *API) fail(w http.ResponseWriter, err error) {
	var se *nreq.ServiceError
	switch {
	case errors.As(err, &se) && se.Code >= 400 && se.Code < 500:
		writeError(w, http.StatusBadRequest, wire.Errorf(wire.CodeInternal, "%s", se.Description))
	case errors.Is(err, context.Canceled):
		// client went away
	default:
		a.log.Warn("api backend call failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, wire.Errorf(wire.CodeUnavailable, "service unavailable; try again"))
	}
}

func roomParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	room, err := names.Room(r.PathValue("room"))
	if err != nil {
		writeError(w, http.StatusBadRequest, wire.Errorf(wire.CodeInvalidRoom, "room must match ^[a-z0-9][a-z0-9_-]{0,63}$"))
		return "", false
	}
	return room, true
}

func uintParam(r *http.Request, name string) (uint64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	return strconv.ParseUint(v, 10, 64)
}

func intParam(w http.ResponseWriter, r *http.Request, name string, def, lo, hi int) (int, bool) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		writeError(w, http.StatusBadRequest, wire.Errorf(wire.CodeInvalidLimit, "%s must be %d-%d", name, lo, hi))
		return 0, false
	}
	return n, true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, e *wire.Error) {
	writeJSON(w, status, e.Frame("", ""))
}
