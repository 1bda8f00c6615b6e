package server

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/gob"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"k8s.io/klog/v2"
	"k8s.io/kube-openapi/pkg/handler3"

	"github.com/steadhq/stead/pkg/fsutil"
)

// The v3 specs of the built-in APIs are a function of the binary and of
// the API server's flags, and building them is 0.35 s of every start (the
// aggregator waits for their hashes before it serves). A server keeps what
// it built in its data dir, under a fingerprint of both, and the next start
// with the same binary and flags serves that instead of building again.

// openAPIV3CacheFormat changes with the file's layout.
const openAPIV3CacheFormat = "stead-openapi-v3-1"

// openAPIV3Cache is the file a server keeps its v3 specs in; a zero one
// keeps nothing.
type openAPIV3Cache struct {
	path        string
	fingerprint string
}

type openAPIV3CacheFile struct {
	Fingerprint   string
	Discovery     []byte
	DiscoveryETag string
	GroupVersions map[string]openAPIV3CachedSpec
}

type openAPIV3CachedSpec struct {
	JSON      []byte // gzipped
	ETag, URL string
}

// newOpenAPIV3Cache is the cache at path for an API server run with args
// by this binary. The etcd flags are left out of the fingerprint: they
// name the embedded etcd's port, which changes at every start, and do not
// reach the specs. Without the binary's build ID there is no cache.
func newOpenAPIV3Cache(path string, args []string) openAPIV3Cache {
	id, err := goBuildID("/proc/self/exe")
	if err != nil {
		klog.V(2).InfoS("Not caching the OpenAPI v3 specs", "err", err)
		return openAPIV3Cache{}
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", openAPIV3CacheFormat, id)
	for _, arg := range args {
		if !strings.HasPrefix(arg, "--etcd-") {
			fmt.Fprintf(h, "%s\x00", arg)
		}
	}
	return openAPIV3Cache{path: path, fingerprint: hex.EncodeToString(h.Sum(nil))}
}

// goBuildID is the Go build ID of the executable at path: a hash of what
// it was built from.
func goBuildID(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	section := f.Section(".note.go.buildid")
	if section == nil {
		return "", fmt.Errorf("%s has no Go build ID", path)
	}
	note, err := section.Data()
	if err != nil {
		return "", err
	}
	return string(note), nil
}

// load is the specs kept for this fingerprint, if there are any and they
// are whole.
func (c openAPIV3Cache) load() (*openAPIV3Specs, bool) {
	if c.path == "" {
		return nil, false
	}
	data, err := os.ReadFile(c.path)
	if err != nil {
		return nil, false
	}
	var file openAPIV3CacheFile
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&file); err != nil || file.Fingerprint != c.fingerprint {
		return nil, false
	}
	if err := file.check(); err != nil {
		klog.InfoS("Rebuilding the OpenAPI v3 specs: the kept ones are damaged", "path", c.path, "err", err)
		return nil, false
	}
	specs := &openAPIV3Specs{
		discovery:     file.Discovery,
		discoveryETag: file.DiscoveryETag,
		groupVersions: make(map[string]*compressedSpec, len(file.GroupVersions)),
	}
	if info, err := os.Stat(c.path); err == nil {
		specs.built = info.ModTime()
	}
	for gv, cached := range file.GroupVersions {
		specs.groupVersions[gv] = newCompressedSpecFromGzip(cached.JSON, cached.ETag, cached.URL)
	}
	return specs, true
}

// check tells whether the file is whole: each ETag the hash of its spec, as
// upstream computes it, and the discovery document naming each spec by it.
func (file *openAPIV3CacheFile) check() error {
	if upstreamETag(file.Discovery) != file.DiscoveryETag {
		return errors.New("the discovery document does not match its ETag")
	}
	var index handler3.OpenAPIV3Discovery
	if err := json.Unmarshal(file.Discovery, &index); err != nil {
		return err
	}
	if len(index.Paths) != len(file.GroupVersions) {
		return fmt.Errorf("%d group versions, %d in the discovery document", len(file.GroupVersions), len(index.Paths))
	}
	for gv, cached := range file.GroupVersions {
		if index.Paths[gv].ServerRelativeURL != cached.URL {
			return fmt.Errorf("%s: its address is not the discovery document's", gv)
		}
		etag, err := upstreamETagOfGzip(cached.JSON)
		if err != nil {
			return fmt.Errorf("%s: %w", gv, err)
		}
		if etag != cached.ETag {
			return fmt.Errorf("%s does not match its ETag", gv)
		}
	}
	return nil
}

// save keeps specs for the next start; a failure costs that start a build.
func (c openAPIV3Cache) save(specs *openAPIV3Specs) {
	if c.path == "" {
		return
	}
	file := openAPIV3CacheFile{
		Fingerprint:   c.fingerprint,
		Discovery:     specs.discovery,
		DiscoveryETag: specs.discoveryETag,
		GroupVersions: make(map[string]openAPIV3CachedSpec, len(specs.groupVersions)),
	}
	for gv, spec := range specs.groupVersions {
		file.GroupVersions[gv] = openAPIV3CachedSpec{JSON: spec.json, ETag: spec.etag, URL: spec.url}
	}
	var data bytes.Buffer
	if err := gob.NewEncoder(&data).Encode(&file); err != nil {
		klog.ErrorS(err, "Keeping the OpenAPI v3 specs")
		return
	}
	if err := fsutil.WriteFile(c.path, data.Bytes(), 0o600); err != nil {
		klog.ErrorS(err, "Keeping the OpenAPI v3 specs", "path", c.path)
	}
}
