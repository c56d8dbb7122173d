package agent

import (
	"context"
	"encoding/base64"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestDecodeDepositIsStrict: a deposit body with an unknown field, a
// missing or malformed field, or a key outside 16–64 bytes is refused
// with 422 naming the field, never its value; a body that is not a JSON
// object is 400.
func TestDecodeDepositIsStrict(t *testing.T) {
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	ok := `"conversation_id":"14155550100@s.whatsapp.net","key_id":"epoch-1","key":"` + key + `"`
	var req depositRequest
	if status, p := decodeDeposit([]byte("{"+ok+"}"), &req); p != nil || string(req.Key) != "0123456789abcdef0123456789abcdef" ||
		req.ConversationID != "14155550100@s.whatsapp.net" {
		t.Fatalf("a valid deposit: %d %+v %+v", status, p, req)
	}
	for _, c := range []struct {
		body   string
		status int
		field  string
	}{
		{"{" + ok + `,"colour":"blue"}`, 422, "colour"},
		{"{" + ok + `,"Key":"x"}`, 422, "Key"},
		{`{"key_id":"k","key":"` + key + `"}`, 422, "conversation_id"},
		{`{"conversation_id":"c","key":"` + key + `"}`, 422, "key_id"},
		{`{"conversation_id":"c","key_id":"k"}`, 422, "key"},
		{`{"conversation_id":"c","key_id":"k","key":"not base64!"}`, 422, "key"},
		{`{"conversation_id":"c","key_id":"k","key":"` + base64.StdEncoding.EncodeToString(make([]byte, 15)) + `"}`, 422, "key"},
		{`{"conversation_id":"c","key_id":"k","key":"` + base64.StdEncoding.EncodeToString(make([]byte, 65)) + `"}`, 422, "key"},
		{`{"conversation_id":"` + strings.Repeat("c", 129) + `","key_id":"k","key":"` + key + `"}`, 422, "conversation_id"},
		{`{"conversation_id":"c\u0001","key_id":"k","key":"` + key + `"}`, 422, "conversation_id"},
		{`{"conversation_id":1,"key_id":"k","key":"` + key + `"}`, 422, "conversation_id"},
		{`{"conversation_id":"a","conversation_id":"b","key_id":"k","key":"` + key + `"}`, 422, "conversation_id"},
		{`[1,2]`, 400, "body"},
		{`{"conversation_id":`, 400, "body"},
		{``, 400, "body"},
	} {
		var req depositRequest
		status, p := decodeDeposit([]byte(c.body), &req)
		if p == nil || status != c.status || p.Field != c.field {
			t.Errorf("%s: %d %+v, want %d naming %s", c.body, status, p, c.status, c.field)
			continue
		}
		if strings.Contains(p.Reason, "whatsapp") || strings.Contains(p.Reason, key) {
			t.Errorf("%s: the reason quotes a value: %s", c.body, p.Reason)
		}
	}
}

// TestLoopbackOnlyByName: a request that reached a TCP listener under a
// name other than localhost or a loopback address (a rebound domain) is
// refused with 421; one over a unix socket, or to 127.0.0.1 or localhost,
// passes.
func TestLoopbackOnlyByName(t *testing.T) {
	a := &Agent{}
	h := a.local(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	tcp := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9000}
	unix := &net.UnixAddr{Name: "/run/agent.sock", Net: "unix"}
	for _, c := range []struct {
		host  string
		local net.Addr
		want  int
	}{
		{"127.0.0.1:9000", tcp, 204},
		{"localhost:9000", tcp, 204},
		{"[::1]:9000", tcp, 204},
		{"attacker.example:9000", tcp, 421},
		{"attacker.example", tcp, 421},
		{"agent", unix, 204},
	} {
		r := httptest.NewRequest("POST", "http://"+c.host+"/v1/events", nil)
		r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, c.local))
		w := httptest.NewRecorder()
		h(w, r)
		if w.Code != c.want {
			t.Errorf("Host %s over %s: %d, want %d", c.host, c.local.Network(), w.Code, c.want)
		}
	}
}
