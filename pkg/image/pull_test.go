package image

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
)

// testRegistry is go-containerregistry's registry on loopback, reachable
// through an open server (for pushing) and servers guarded by Basic and by
// Bearer token authentication.
type testRegistry struct {
	open, basic, bearer *httptest.Server
}

const (
	testUser     = "alice"
	testPassword = "s3cret"
	testToken    = "token-for-alice"
)

func startRegistry(t *testing.T) *testRegistry {
	t.Helper()
	handler := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	r := &testRegistry{}
	r.open = httptest.NewServer(handler)
	r.basic = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		user, password, ok := req.BasicAuth()
		if !ok || user != testUser || password != testPassword {
			w.Header().Set("WWW-Authenticate", `Basic realm="test registry"`)
			refuse(w, "invalid username or password for "+user)
			return
		}
		handler.ServeHTTP(w, req)
	}))
	var bearer *httptest.Server
	bearer = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/token" {
			user, password, _ := req.BasicAuth()
			if user != testUser || password != testPassword || req.URL.Query().Get("service") != "test" ||
				!strings.HasPrefix(req.URL.Query().Get("scope"), "repository:") {
				refuse(w, "token refused for "+user)
				return
			}
			json.NewEncoder(w).Encode(map[string]string{"token": testToken})
			return
		}
		if req.Header.Get("Authorization") != "Bearer "+testToken {
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+bearer.URL+`/token",service="test"`)
			refuse(w, "authentication required")
			return
		}
		handler.ServeHTTP(w, req)
	}))
	r.bearer = bearer
	t.Cleanup(func() {
		r.open.Close()
		r.basic.Close()
		r.bearer.Close()
	})
	return r
}

func refuse(w http.ResponseWriter, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	json.NewEncoder(w).Encode(map[string]any{
		"errors": []map[string]string{{"code": "UNAUTHORIZED", "message": message}},
	})
}

func host(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

func TestPull(t *testing.T) {
	reg := startRegistry(t)
	img := randomImage(t, 3)
	pushImage(t, reg.open.URL, "library/busybox", "1.28.4", img)
	pushImage(t, reg.open.URL, "team/app", "v1", img)
	manifestDigest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	good := []Credentials{{Registry: host(reg.basic), Username: testUser, Password: testPassword}}
	goodBearer := []Credentials{{Registry: host(reg.bearer), Username: testUser, Password: testPassword}}

	tests := []struct {
		name    string
		opts    []Option
		ref     string
		creds   []Credentials
		wantRef string
		wantErr []string
	}{
		{name: "anonymous", ref: host(reg.open) + "/team/app:v1", wantRef: host(reg.open) + "/team/app:v1"},
		{
			name:    "by digest",
			ref:     host(reg.open) + "/team/app@" + manifestDigest.String(),
			wantRef: host(reg.open) + "/team/app@" + manifestDigest.String(),
		},
		{name: "basic auth", ref: host(reg.basic) + "/team/app:v1", creds: good, wantRef: host(reg.basic) + "/team/app:v1"},
		{
			name: "basic auth, second credentials right",
			ref:  host(reg.basic) + "/team/app:v1",
			creds: []Credentials{
				{Registry: host(reg.basic), Username: testUser, Password: "wrong"},
				{Registry: "http://" + host(reg.basic), Username: testUser, Password: testPassword},
			},
			wantRef: host(reg.basic) + "/team/app:v1",
		},
		{
			name:    "basic auth, wrong password",
			ref:     host(reg.basic) + "/team/app:v1",
			creds:   []Credentials{{Registry: host(reg.basic), Username: testUser, Password: "wrong"}},
			wantErr: []string{"401", "invalid username or password for alice", host(reg.basic) + "/team/app:v1"},
		},
		{
			name:    "basic auth, credentials for another registry are not sent",
			ref:     host(reg.basic) + "/team/app:v1",
			creds:   []Credentials{{Registry: "registry.example.com", Username: testUser, Password: testPassword}},
			wantErr: []string{"registry requires credentials", "invalid username or password"},
		},
		{name: "bearer token", ref: host(reg.bearer) + "/team/app:v1", creds: goodBearer, wantRef: host(reg.bearer) + "/team/app:v1"},
		{
			name:    "bearer token, wrong password",
			ref:     host(reg.bearer) + "/team/app:v1",
			creds:   []Credentials{{Registry: host(reg.bearer), Username: testUser, Password: "nope"}},
			wantErr: []string{"token", "token refused for alice"},
		},
		{
			name:    "missing tag",
			ref:     host(reg.open) + "/team/app:missing",
			wantErr: []string{"404", "MANIFEST_UNKNOWN", host(reg.open) + "/team/app:missing"},
		},
		{
			name:    "missing repository",
			ref:     host(reg.open) + "/team/nothing:v1",
			wantErr: []string{"404", "NAME_UNKNOWN"},
		},
		{
			name:    "docker.io through a mirror",
			opts:    []Option{WithRegistryMirror(reg.open.URL)},
			ref:     "busybox:1.28.4",
			wantRef: "docker.io/library/busybox:1.28.4",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t, tt.opts...)
			got, err := s.Pull(context.Background(), tt.ref, tt.creds, PullAlways)
			if tt.wantErr != nil {
				for _, want := range tt.wantErr {
					if !errorContains(err, want) {
						t.Errorf("Pull error = %v, want it to contain %q", err, want)
					}
				}
				if refs := listRefs(t, s); len(refs) != 0 {
					t.Errorf("a failed pull left %v", refs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Ref != tt.wantRef || got.ID != configName(t, img) {
				t.Errorf("Pull = %+v, want ref %s and ID %s", got, tt.wantRef, configName(t, img))
			}
			if !strings.HasSuffix(got.RepoDigest, "@"+manifestDigest.String()) {
				t.Errorf("repo digest %s, want the manifest digest %s", got.RepoDigest, manifestDigest)
			}
			rootfs, err := s.Unpack(context.Background(), tt.ref)
			if err != nil {
				t.Fatal(err)
			}
			if len(rootfs.LowerDirs) != 3 {
				t.Errorf("%d lowerdirs, want 3", len(rootfs.LowerDirs))
			}
		})
	}
}

func TestPullPolicy(t *testing.T) {
	reg := startRegistry(t)
	img := randomImage(t, 1)
	pushImage(t, reg.open.URL, "team/app", "v1", img)
	ref := host(reg.open) + "/team/app:v1"
	absent := host(reg.open) + "/team/app:absent"
	tests := []struct {
		name    string
		ref     string
		policy  PullPolicy
		present bool
		stopped bool // registry down
		wantErr error
	}{
		{name: "Never, absent", ref: ref, policy: PullNever, wantErr: ErrNeverPull},
		{name: "Never, present", ref: ref, policy: PullNever, present: true, stopped: true},
		{name: "IfNotPresent, present, registry down", ref: ref, policy: PullIfNotPresent, present: true, stopped: true},
		{name: "IfNotPresent, absent", ref: ref, policy: PullIfNotPresent},
		{name: "default for a tag is IfNotPresent", ref: ref, policy: "", present: true, stopped: true},
		{name: "Always, present, refreshed", ref: ref, policy: PullAlways, present: true},
		{name: "unknown policy", ref: ref, policy: "Sometimes", wantErr: errors.New("unknown pull policy")},
		{name: "IfNotPresent, absent and missing", ref: absent, policy: PullIfNotPresent, wantErr: errors.New("MANIFEST_UNKNOWN")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t)
			if tt.present {
				if _, err := s.Pull(context.Background(), ref, nil, PullAlways); err != nil {
					t.Fatal(err)
				}
			}
			if tt.stopped {
				s.client = refusingClient{}
			}
			got, err := s.Pull(context.Background(), tt.ref, nil, tt.policy)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatal(err)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr) && !errorContains(err, tt.wantErr.Error()):
				t.Fatalf("Pull = %v, want %v", err, tt.wantErr)
			case tt.wantErr == nil && got.ID != configName(t, img):
				t.Errorf("Pull returned ID %s, want %s", got.ID, configName(t, img))
			}
		})
	}
}

// refusingClient stands for a registry that cannot be reached.
type refusingClient struct{}

func (refusingClient) Do(req *http.Request) (*http.Response, error) {
	return nil, errors.New("registry unreachable in this test")
}

func TestParseChallenge(t *testing.T) {
	tests := []struct {
		in         string
		wantScheme string
		wantParams map[string]string
	}{
		{
			in:         `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"`,
			wantScheme: "bearer",
			wantParams: map[string]string{"realm": "https://auth.docker.io/token", "service": "registry.docker.io", "scope": "repository:library/busybox:pull"},
		},
		{in: `Basic realm="Registry Realm"`, wantScheme: "basic", wantParams: map[string]string{"realm": "Registry Realm"}},
		{in: `Bearer realm=https://x/token, service=x`, wantScheme: "bearer", wantParams: map[string]string{"realm": "https://x/token", "service": "x"}},
	}
	for _, tt := range tests {
		scheme, params := parseChallenge(tt.in)
		if scheme != tt.wantScheme || len(params) != len(tt.wantParams) {
			t.Errorf("parseChallenge(%q) = %q %v", tt.in, scheme, params)
			continue
		}
		for k, v := range tt.wantParams {
			if params[k] != v {
				t.Errorf("parseChallenge(%q)[%s] = %q, want %q", tt.in, k, params[k], v)
			}
		}
	}
}
