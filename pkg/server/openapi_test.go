package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	restful "github.com/emicklei/go-restful/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/mux"
	apiserverroutes "k8s.io/apiserver/pkg/server/routes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/kube-openapi/pkg/common"
	"k8s.io/kube-openapi/pkg/handler3"
	"k8s.io/kube-openapi/pkg/validation/spec"
	generatedopenapi "k8s.io/kubernetes/pkg/generated/openapi"
)

// Two group versions' routes, as the built-in APIs' server has some fifty.
func exampleRoutes() *restful.Container {
	container := restful.NewContainer()
	for _, gv := range []struct {
		root, operation string
		sample          any
	}{
		{"/api/v1", "readCoreV1NamespacedConfigMap", corev1.ConfigMap{}},
		{"/apis/apps/v1", "readAppsV1NamespacedStatefulSet", appsv1.StatefulSet{}},
	} {
		ws := new(restful.WebService).Path(gv.root).Produces("application/json")
		ws.Route(ws.GET("/namespaces/{namespace}/things/{name}").
			To(func(*restful.Request, *restful.Response) {}).
			Operation(gv.operation).
			Param(ws.PathParameter("namespace", "the object's namespace")).
			Param(ws.PathParameter("name", "the object's name")).
			Returns(http.StatusOK, "OK", gv.sample).
			Writes(gv.sample))
		container.Add(ws)
	}
	return container
}

func exampleOpenAPIV3Config() *common.OpenAPIV3Config {
	config := genericapiserver.DefaultOpenAPIV3Config(generatedopenapi.GetOpenAPIDefinitions, openapinamer.NewDefinitionNamer(scheme.Scheme))
	config.Info.Title, config.Info.Version = "Kubernetes", "v1.37"
	return config
}

func get(t *testing.T, h http.Handler, url string, header map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, url, nil)
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// stead's v3 handler answers every request as upstream's handler3 does,
// byte for byte, with the same headers, from its compressed copy.
func TestOpenAPIV3ServedAsUpstreamServesIt(t *testing.T) {
	routes := exampleRoutes()
	upstream := mux.NewPathRecorderMux("upstream")
	apiserverroutes.OpenAPI{V3Config: exampleOpenAPIV3Config()}.InstallV3(routes, upstream)
	config := exampleOpenAPIV3Config()
	stead := mux.NewPathRecorderMux("stead")
	specs := newOpenAPIV3(routes, config, openAPIV3Cache{})
	specs.register(stead)

	discovery := get(t, upstream, "/openapi/v3", nil)
	var index handler3.OpenAPIV3Discovery
	if err := json.Unmarshal(discovery.Body.Bytes(), &index); err != nil || len(index.Paths) != 2 {
		t.Fatalf("upstream's discovery: %v, %s", err, discovery.Body)
	}
	hashed := index.Paths["apis/apps/v1"].ServerRelativeURL
	core := get(t, upstream, "/openapi/v3/api/v1", nil)
	if core.Code != http.StatusOK || !bytes.Contains(core.Body.Bytes(), []byte("io.k8s.api.core.v1.ConfigMap")) {
		t.Fatalf("upstream's api/v1: %d %.200s", core.Code, core.Body)
	}
	const protobuf = "application/com.github.proto-openapi.spec.v3.v1.0+protobuf"
	requests := []struct {
		name   string
		url    string
		header map[string]string
	}{
		{"discovery", "/openapi/v3", nil},
		{"discovery not modified", "/openapi/v3", map[string]string{"If-None-Match": discovery.Header().Get("Etag")}},
		{"a group version as JSON", "/openapi/v3/api/v1", map[string]string{"Accept": "application/json"}},
		{"any type is JSON", "/openapi/v3/api/v1", nil},
		{"by its hash: cached for good", hashed, nil},
		{"another hash: redirected", "/openapi/v3/apis/apps/v1?hash=0123", nil},
		{"protobuf", "/openapi/v3/api/v1", map[string]string{"Accept": protobuf}},
		{"protobuf by its deprecated name", "/openapi/v3/apis/apps/v1", map[string]string{"Accept": "application/com.github.proto-openapi.spec.v3@v1.0+protobuf"}},
		{"protobuf preferred", "/openapi/v3/api/v1", map[string]string{"Accept": protobuf + ", application/json;q=0.5"}},
		{"not acceptable", "/openapi/v3/api/v1", map[string]string{"Accept": "text/plain"}},
		{"not modified", "/openapi/v3/api/v1", map[string]string{"If-None-Match": core.Header().Get("Etag")}},
	}
	for round := range 2 {
		for _, r := range requests {
			want, got := get(t, upstream, r.url, r.header), get(t, stead, r.url, r.header)
			if got.Code != want.Code {
				t.Errorf("round %d, %s: status %d, upstream %d", round, r.name, got.Code, want.Code)
			}
			for _, h := range []string{"Content-Type", "Etag", "Cache-Control", "Location", "Vary"} {
				if got.Header().Get(h) != want.Header().Get(h) {
					t.Errorf("round %d, %s: %s %q, upstream %q", round, r.name, h, got.Header().Get(h), want.Header().Get(h))
				}
			}
			if (got.Header().Get("Expires") == "") != (want.Header().Get("Expires") == "") {
				t.Errorf("round %d, %s: Expires %q, upstream %q", round, r.name, got.Header().Get("Expires"), want.Header().Get("Expires"))
			}
			if !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
				t.Errorf("round %d, %s: %d bytes (%.100q), upstream %d (%.100q)", round, r.name, got.Body.Len(), got.Body, want.Body.Len(), want.Body)
			}
		}
		// The second round is served without the definitions.
		specs.releaseDefinitions()
		if config.Definitions != nil {
			t.Errorf("the configuration keeps its %d definitions", len(config.Definitions))
		}
	}
	if w := get(t, stead, "/openapi/v3/apis/nowhere/v1", nil); w.Code != http.StatusNotFound {
		t.Errorf("a group version that is not served: %d, want 404", w.Code)
	}
	if etag, err := strconv.Unquote(core.Header().Get("Etag")); err != nil || etag == "" {
		t.Errorf("upstream's ETag %q: %v", core.Header().Get("Etag"), err)
	}
}

// Once the specs are built and the definitions released, nothing keeps the
// generated definitions: not the configuration, not the function that
// kube-openapi's builders put into it (deferOpenAPI's).
func TestOpenAPIV3KeepsNoDefinitions(t *testing.T) {
	released := make(chan struct{})
	var once sync.Once
	getDefinitions := func(ref common.ReferenceCallback) map[string]common.OpenAPIDefinition {
		definitions := generatedopenapi.GetOpenAPIDefinitions(ref)
		// Referred to by no route, so reachable through the map alone.
		sentinel := new([64]byte)
		runtime.AddCleanup(sentinel, func(struct{}) { once.Do(func() { close(released) }) }, struct{}{})
		definitions["sentinel"] = common.OpenAPIDefinition{Schema: spec.Schema{VendorExtensible: spec.VendorExtensible{Extensions: spec.Extensions{"x-sentinel": sentinel}}}}
		return definitions
	}
	config := genericapiserver.DefaultOpenAPIV3Config(getDefinitions, openapinamer.NewDefinitionNamer(scheme.Scheme))
	config.Info.Title, config.Info.Version = "Kubernetes", "v1.37"
	_, config = deferOpenAPI(&genericapiserver.Config{OpenAPIV3Config: config})
	specs := newOpenAPIV3(exampleRoutes(), config, openAPIV3Cache{})
	served := mux.NewPathRecorderMux("stead")
	specs.register(served)
	if w := get(t, served, "/openapi/v3", nil); w.Code != http.StatusOK {
		t.Fatalf("discovery: %d %s", w.Code, w.Body)
	}
	specs.releaseDefinitions()
	deadline := time.After(10 * time.Second)
	for done := false; !done; {
		runtime.GC()
		select {
		case <-released:
			done = true
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatal("the generated definitions are still reachable after the build")
		}
	}
	if w := get(t, served, "/openapi/v3/apis/apps/v1", nil); w.Code != http.StatusOK || !bytes.Contains(w.Body.Bytes(), []byte("io.k8s.api.apps.v1.StatefulSet")) {
		t.Errorf("apps/v1 after the release: %d %.200s", w.Code, w.Body)
	}
}

// A server keeps its v3 specs between starts: a start with the same
// fingerprint serves them without building (here from no routes at all),
// one with another fingerprint or a damaged file builds.
func TestOpenAPIV3KeptBetweenStarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache", "openapi-v3")
	kept := openAPIV3Cache{path: path, fingerprint: "binary and flags"}
	serve := func(routes *restful.Container, cache openAPIV3Cache) http.Handler {
		served := mux.NewPathRecorderMux("stead")
		newOpenAPIV3(routes, exampleOpenAPIV3Config(), cache).register(served)
		return served
	}
	first := serve(exampleRoutes(), kept)
	want := map[string]*httptest.ResponseRecorder{}
	for _, url := range []string{"/openapi/v3", "/openapi/v3/api/v1", "/openapi/v3/apis/apps/v1"} {
		if want[url] = get(t, first, url, nil); want[url].Code != http.StatusOK {
			t.Fatalf("%s: %d", url, want[url].Code)
		}
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the specs are not kept: %v", err)
	}
	noRoutes := restful.NewContainer()
	again := serve(noRoutes, kept)
	for url, w := range want {
		got := get(t, again, url, nil)
		if got.Code != w.Code || got.Header().Get("Etag") != w.Header().Get("Etag") || !bytes.Equal(got.Body.Bytes(), w.Body.Bytes()) {
			t.Errorf("%s from the kept specs: %d %s %d bytes, first start %d %s %d bytes", url, got.Code, got.Header().Get("Etag"), got.Body.Len(), w.Code, w.Header().Get("Etag"), w.Body.Len())
		}
	}
	if w := get(t, again, "/openapi/v3/api/v1", map[string]string{"Accept": "application/com.github.proto-openapi.spec.v3.v1.0+protobuf"}); w.Code != http.StatusOK || w.Body.Len() == 0 {
		t.Errorf("protobuf from the kept specs: %d, %d bytes", w.Code, w.Body.Len())
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	damaged := bytes.Clone(data)
	damaged[len(damaged)/2] ^= 0x40
	for name, setup := range map[string]func() openAPIV3Cache{
		"another binary or flags": func() openAPIV3Cache {
			return openAPIV3Cache{path: path, fingerprint: "another"}
		},
		"a damaged file": func() openAPIV3Cache {
			if err := os.WriteFile(path, damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			return kept
		},
	} {
		rebuilt := serve(noRoutes, setup())
		if w := get(t, rebuilt, "/openapi/v3/api/v1", nil); w.Code != http.StatusNotFound {
			t.Errorf("%s: api/v1 %d, want it built anew from no routes (404)", name, w.Code)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestGoBuildIDOfThisTest(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	id, err := goBuildID(exe)
	if err != nil || len(id) < 20 {
		t.Fatalf("build ID %q: %v", id, err)
	}
	if _, err := goBuildID("/proc/self/cmdline"); err == nil {
		t.Error("a file that is not an executable has a build ID")
	}
}
