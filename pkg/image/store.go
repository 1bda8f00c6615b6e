// Package image is the node's image store: images imported from tarballs or
// pulled from registries, kept under <data-dir>/images with every layer
// extracted once into a directory that overlayfs can use as a lowerdir.
//
// Layout of the store directory:
//
//	gc.lock, index.lock   flock files (see below)
//	index.json            reference -> manifest digest, image ID, size, created
//	blobs/sha256/<hex>    manifests and image configs, content-addressed
//	layers/<hex>/fs       a layer extracted, named by its diffID
//	layers/<hex>/size     its uncompressed tar size
//	tmp/                  work in progress; renamed into place when complete
//
// Several processes may use one store at once (`stead up` and `stead image
// import`). Everything visible is created by renaming a complete temporary
// file or directory into place, so a kill -9 never leaves a torn blob, layer
// or index behind. Importers and pullers hold gc.lock shared while they add
// content; removal takes it exclusively before deleting what nothing refers
// to, so it cannot delete a layer that an import is about to reference.
// index.lock serialises the read-modify-write of index.json.
package image

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/steadhq/stead/pkg/fsutil"
)

// ErrNotFound is returned (wrapped) when the store holds no image by the
// name asked for.
var ErrNotFound = errors.New("image not found in the store")

// Image is one reference held by the store.
type Image struct {
	// Ref is the normalised reference, e.g. docker.io/library/busybox:1.28.4.
	Ref string
	// ID is the digest of the image config, as docker and crictl show it.
	ID string
	// RepoDigest is repository@digest of the manifest the registry served,
	// set only for pulled images.
	RepoDigest string
	// Size is the total uncompressed size of the layers, in bytes.
	Size int64
	// Created is when the image was built, from its config.
	Created time.Time
}

// Store is an image store in one directory. It is safe for concurrent use by
// several goroutines and several processes.
type Store struct {
	dir                string
	registryMirror     string
	insecureRegistries map[string]bool
	client             httpDoer
}

// Option configures a Store.
type Option func(*Store)

// WithRegistryMirror makes pulls of docker.io images try endpoint (for
// example "https://mirror.gcr.io" or "http://127.0.0.1:5000") before Docker
// Hub, as dockerd's --registry-mirror does.
func WithRegistryMirror(endpoint string) Option {
	return func(s *Store) { s.registryMirror = strings.TrimSuffix(endpoint, "/") }
}

// WithInsecureRegistry makes pulls from host (host[:port]) use plain HTTP.
// Loopback registries always use plain HTTP and need no such option.
func WithInsecureRegistry(host string) Option {
	return func(s *Store) { s.insecureRegistries[host] = true }
}

// Open opens the store in dir, creating it if needed.
func Open(dir string, opts ...Option) (*Store, error) {
	s := &Store{dir: dir, insecureRegistries: map[string]bool{}, client: newHTTPClient()}
	for _, opt := range opts {
		opt(s)
	}
	for _, sub := range []string{s.blobDir(), s.layerDir(), s.tmpDir()} {
		if err := os.MkdirAll(sub, 0o700); err != nil {
			return nil, fmt.Errorf("image store %s: %w", dir, err)
		}
	}
	// Leftovers of a killed import are garbage only if nobody else is working
	// in the store right now.
	if lock, ok, err := s.tryLockExclusive(); err != nil {
		return nil, err
	} else if ok {
		s.cleanTmp()
		lock.release()
	}
	return s, nil
}

// Dir is the directory the store lives in.
func (s *Store) Dir() string { return s.dir }

func (s *Store) blobDir() string  { return filepath.Join(s.dir, "blobs", "sha256") }
func (s *Store) layerDir() string { return filepath.Join(s.dir, "layers") }
func (s *Store) tmpDir() string   { return filepath.Join(s.dir, "tmp") }
func (s *Store) indexPath() string {
	return filepath.Join(s.dir, "index.json")
}

func (s *Store) blobPath(h v1.Hash) string { return filepath.Join(s.blobDir(), h.Hex) }

// layerPath is the directory holding the layer whose uncompressed tar has
// digest diffID; its "fs" subdirectory is the overlayfs lowerdir.
func (s *Store) layerPath(diffID v1.Hash) string { return filepath.Join(s.layerDir(), diffID.Hex) }

// fileLock is an flock held through its own open file description, so two
// locks taken in one process exclude each other as they would across
// processes. The kernel drops it when the process dies.
type fileLock struct{ f *os.File }

func (s *Store) lock(name string, how int) (*fileLock, error) {
	f, err := os.OpenFile(filepath.Join(s.dir, name), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("image store lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return &fileLock{f: f}, nil
}

func (l *fileLock) release() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// lockShared is held while adding content, so that garbage collection
// cannot run in the middle.
func (s *Store) lockShared() (*fileLock, error) { return s.lock("gc.lock", unix.LOCK_SH) }

func (s *Store) tryLockExclusive() (*fileLock, bool, error) {
	l, err := s.lock("gc.lock", unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("image store lock: %w", err)
	}
	return l, true, nil
}

func (s *Store) cleanTmp() {
	entries, _ := os.ReadDir(s.tmpDir())
	for _, e := range entries {
		_ = os.RemoveAll(filepath.Join(s.tmpDir(), e.Name()))
	}
}

// indexEntry is what index.json records for one reference. ID, size and
// created are copies of what the manifest and config say, kept so that
// listing images reads one file.
type indexEntry struct {
	Manifest   string    `json:"manifest"`
	ID         string    `json:"id"`
	RepoDigest string    `json:"repoDigest,omitempty"`
	Size       int64     `json:"size"`
	Created    time.Time `json:"created"`
}

type indexFile struct {
	Images map[string]indexEntry `json:"images"`
}

func (s *Store) readIndex() (indexFile, error) {
	idx := indexFile{Images: map[string]indexEntry{}}
	data, err := os.ReadFile(s.indexPath())
	if errors.Is(err, fs.ErrNotExist) {
		return idx, nil
	}
	if err != nil {
		return idx, fmt.Errorf("image store index: %w", err)
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		return idx, fmt.Errorf("image store index %s is corrupt: %w", s.indexPath(), err)
	}
	if idx.Images == nil {
		idx.Images = map[string]indexEntry{}
	}
	return idx, nil
}

// updateIndex applies change to index.json under index.lock and replaces the
// file atomically.
func (s *Store) updateIndex(change func(*indexFile) error) error {
	l, err := s.lock("index.lock", unix.LOCK_EX)
	if err != nil {
		return fmt.Errorf("image store index lock: %w", err)
	}
	defer l.release()
	idx, err := s.readIndex()
	if err != nil {
		return err
	}
	if err := change(&idx); err != nil {
		return err
	}
	data, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFile(s.indexPath(), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("image store index: %w", err)
	}
	return nil
}

// List returns every reference in the store, sorted by reference.
func (s *Store) List() ([]Image, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	images := make([]Image, 0, len(idx.Images))
	for ref, e := range idx.Images {
		images = append(images, e.image(ref))
	}
	sort.Slice(images, func(i, j int) bool { return images[i].Ref < images[j].Ref })
	return images, nil
}

func (e indexEntry) image(ref string) Image {
	return Image{Ref: ref, ID: e.ID, RepoDigest: e.RepoDigest, Size: e.Size, Created: e.Created}
}

// Get returns the image that ref names: a reference in any form Resolve
// accepts, or an image ID (sha256:<hex>, or a prefix of at least 12 hex
// digits) that only one image has.
func (s *Store) Get(ref string) (Image, error) {
	refs, err := s.lookup(ref)
	if err != nil {
		return Image{}, err
	}
	idx, err := s.readIndex()
	if err != nil {
		return Image{}, err
	}
	e, ok := idx.Images[refs[0]]
	if !ok {
		return Image{}, fmt.Errorf("%s: %w", ref, ErrNotFound)
	}
	return e.image(refs[0]), nil
}

// lookup returns the references that ref names: itself normalised, or every
// tag of the image whose ID it is.
func (s *Store) lookup(ref string) ([]string, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	if id, ok := idPrefix(ref); ok {
		var refs []string
		ids := map[string]bool{}
		for r, e := range idx.Images {
			if strings.HasPrefix(strings.TrimPrefix(e.ID, "sha256:"), id) {
				refs = append(refs, r)
				ids[e.ID] = true
			}
		}
		if len(ids) > 1 {
			return nil, fmt.Errorf("image ID %s is ambiguous: %d images start with it", ref, len(ids))
		}
		if len(refs) > 0 {
			sort.Strings(refs)
			return refs, nil
		}
	}
	normalised, err := Resolve(ref)
	if err != nil {
		return nil, err
	}
	if _, ok := idx.Images[normalised]; !ok {
		return nil, fmt.Errorf("%s: %w", ref, ErrNotFound)
	}
	return []string{normalised}, nil
}

// idPrefix reports whether ref can be an image ID and returns its hex part.
func idPrefix(ref string) (string, bool) {
	hex := strings.TrimPrefix(ref, "sha256:")
	if len(hex) < 12 || len(hex) > 64 {
		return "", false
	}
	for _, c := range hex {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", false
		}
	}
	return hex, true
}

// Remove untags ref (or every tag of an image ID) and deletes the blobs and
// layers that no remaining image uses. The caller must not remove an image
// that a running container uses: as with the CRI, that is the agent's
// check. Layers still mounted by overlayfs in this mount namespace are kept
// regardless.
func (s *Store) Remove(ref string) error {
	refs, err := s.lookup(ref)
	if err != nil {
		return err
	}
	err = s.updateIndex(func(idx *indexFile) error {
		for _, r := range refs {
			delete(idx.Images, r)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove %s: %w", ref, err)
	}
	// An import or pull in progress may be adding content that is not yet in
	// the index; collection waits for a moment when nobody is.
	lock, ok, err := s.tryLockExclusive()
	if err != nil || !ok {
		return err
	}
	defer lock.release()
	return s.collectGarbage()
}

// collectGarbage deletes blobs and layers that no reference uses. The caller
// holds gc.lock exclusively.
func (s *Store) collectGarbage() error {
	idx, err := s.readIndex()
	if err != nil {
		return err
	}
	usedBlobs := map[string]bool{}
	usedLayers := map[string]bool{}
	for ref, e := range idx.Images {
		m, err := s.readManifest(e.Manifest)
		if err != nil {
			return fmt.Errorf("garbage collection: %s: %w", ref, err)
		}
		usedBlobs[strings.TrimPrefix(e.Manifest, "sha256:")] = true
		usedBlobs[m.Config.Digest.Hex] = true
		for _, l := range m.Layers {
			usedLayers[l.Digest.Hex] = true
		}
	}
	blobs, err := os.ReadDir(s.blobDir())
	if err != nil {
		return err
	}
	for _, b := range blobs {
		if !usedBlobs[b.Name()] {
			if err := os.Remove(filepath.Join(s.blobDir(), b.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	mounted := mountedLowerDirs()
	layers, err := os.ReadDir(s.layerDir())
	if err != nil {
		return err
	}
	for _, l := range layers {
		path := filepath.Join(s.layerDir(), l.Name())
		if usedLayers[l.Name()] || mounted[filepath.Join(path, "fs")] {
			continue
		}
		// Renamed away first so that no one ever sees a half-deleted layer.
		doomed := filepath.Join(s.tmpDir(), "rm-"+l.Name())
		if err := os.Rename(path, doomed); err != nil {
			return err
		}
		if err := os.RemoveAll(doomed); err != nil {
			return err
		}
	}
	s.cleanTmp()
	return nil
}

// mountedLowerDirs returns the lowerdirs of the overlayfs mounts visible in
// this mount namespace.
func mountedLowerDirs() map[string]bool {
	dirs := map[string]bool{}
	data, err := fsutil.MountInfo()
	if err != nil {
		return dirs
	}
	for _, line := range strings.Split(string(data), "\n") {
		_, after, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		fields := strings.Fields(after)
		if len(fields) < 3 || fields[0] != "overlay" {
			continue
		}
		for _, opt := range strings.Split(fields[2], ",") {
			if lower, ok := strings.CutPrefix(opt, "lowerdir="); ok {
				for _, d := range strings.Split(lower, ":") {
					dirs[unescapeMountinfo(d)] = true
				}
			}
		}
	}
	return dirs
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) that the
// kernel writes in mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func (s *Store) readBlob(h v1.Hash) ([]byte, error) {
	data, err := os.ReadFile(s.blobPath(h))
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", h, err)
	}
	return data, nil
}

func (s *Store) readManifest(digest string) (*v1.Manifest, error) {
	h, err := v1.NewHash(digest)
	if err != nil {
		return nil, err
	}
	data, err := s.readBlob(h)
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", digest, err)
	}
	return m, nil
}

// writeBlob stores data under its sha256 digest, atomically.
func (s *Store) writeBlob(data []byte) (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(data))
	if err != nil {
		return v1.Hash{}, err
	}
	if _, err := os.Stat(s.blobPath(h)); err == nil {
		return h, nil
	}
	if err := fsutil.WriteFile(s.blobPath(h), data, 0o600); err != nil {
		return v1.Hash{}, fmt.Errorf("blob %s: %w", h, err)
	}
	return h, nil
}

// checkContext is a small helper so long loops stop when asked.
func checkContext(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return nil
}
