package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// pendingImage is an image read from a tarball or a registry and not yet
// in the store.
type pendingImage struct {
	refs       []string
	config     []byte
	layers     []pendingLayer
	repoDigest string
}

// pendingLayer is where to read one layer from.
type pendingLayer struct {
	// digest is that of the bytes open returns, compressed or not; it is
	// checked when known. The diffID, checked always, comes from the config.
	digest v1.Hash
	open   func(ctx context.Context) (io.ReadCloser, error)
}

// commit adds p to the store: layers first, then the config and manifest,
// then the references in the index, so that the index never names content
// that is not complete. The caller holds gc.lock shared.
func (s *Store) commit(ctx context.Context, p pendingImage) (Image, error) {
	cfg, err := v1.ParseConfigFile(bytes.NewReader(p.config))
	if err != nil {
		return Image{}, fmt.Errorf("image config: %w", err)
	}
	if len(cfg.RootFS.DiffIDs) != len(p.layers) {
		return Image{}, fmt.Errorf("image config lists %d layers but the manifest has %d", len(cfg.RootFS.DiffIDs), len(p.layers))
	}
	manifest := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1}
	var total int64
	for i, layer := range p.layers {
		diffID := cfg.RootFS.DiffIDs[i]
		size, err := s.ensureLayer(ctx, diffID, layer)
		if err != nil {
			return Image{}, fmt.Errorf("layer %d (%s): %w", i+1, diffID, err)
		}
		total += size
		// The manifest describes what the store keeps: each layer as its
		// uncompressed tar, which is what the diffID is the digest of.
		manifest.Layers = append(manifest.Layers, v1.Descriptor{
			MediaType: types.OCIUncompressedLayer,
			Size:      size,
			Digest:    diffID,
		})
	}
	configDigest, err := s.writeBlob(p.config)
	if err != nil {
		return Image{}, err
	}
	manifest.Config = v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(p.config)), Digest: configDigest}
	rawManifest, err := json.Marshal(manifest)
	if err != nil {
		return Image{}, err
	}
	manifestDigest, err := s.writeBlob(rawManifest)
	if err != nil {
		return Image{}, err
	}
	entry := indexEntry{
		Manifest:   manifestDigest.String(),
		ID:         configDigest.String(),
		RepoDigest: p.repoDigest,
		Size:       total,
		Created:    cfg.Created.Time.UTC(),
	}
	err = s.updateIndex(func(idx *indexFile) error {
		for _, ref := range p.refs {
			idx.Images[ref] = entry
		}
		return nil
	})
	if err != nil {
		return Image{}, err
	}
	return entry.image(p.refs[0]), nil
}

// layerSize returns the size of the layer if the store has it already.
func (s *Store) layerSize(diffID v1.Hash) (int64, bool) {
	data, err := os.ReadFile(filepath.Join(s.layerPath(diffID), "size"))
	if err != nil {
		return 0, false
	}
	size, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	return size, err == nil
}

// ensureLayer extracts the layer into layers/<diffID hex> unless it is there
// already, and returns its uncompressed size. Two processes extracting the
// same layer at once both succeed: each works in its own temporary
// directory and the first rename wins.
func (s *Store) ensureLayer(ctx context.Context, diffID v1.Hash, layer pendingLayer) (int64, error) {
	if diffID.Algorithm != "sha256" {
		return 0, fmt.Errorf("unsupported digest algorithm %q", diffID.Algorithm)
	}
	if size, ok := s.layerSize(diffID); ok {
		return size, nil
	}
	work, err := os.MkdirTemp(s.tmpDir(), "layer-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(work)
	if err := os.Chmod(work, 0o700); err != nil {
		return 0, err
	}
	// The root of a layer must be traversable by the unprivileged users that
	// containers run as; a tar entry for "./" may change it.
	root := filepath.Join(work, "fs")
	if err := os.Mkdir(root, 0o755); err != nil {
		return 0, err
	}
	size, err := extractVerified(ctx, root, diffID, layer)
	if err != nil {
		return 0, err
	}
	if err := os.WriteFile(filepath.Join(work, "size"), []byte(strconv.FormatInt(size, 10)+"\n"), 0o600); err != nil {
		return 0, err
	}
	// The layer must be on disk before its name is: a crash after the
	// rename must not expose a layer whose files are still in the page cache.
	if err := syncFilesystem(work); err != nil {
		return 0, err
	}
	if err := os.Chmod(work, 0o755); err != nil {
		return 0, err
	}
	if err := os.Rename(work, s.layerPath(diffID)); err != nil {
		if existing, ok := s.layerSize(diffID); ok {
			return existing, nil
		}
		return 0, err
	}
	return size, nil
}

// extractVerified reads the layer, decompressing as needed, applies it
// under root and checks both its digest (when known) and its diffID.
func extractVerified(ctx context.Context, root string, diffID v1.Hash, layer pendingLayer) (int64, error) {
	rc, err := layer.open(ctx)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	var raw io.Reader = rc
	var blobHash hash.Hash
	if layer.digest != (v1.Hash{}) {
		if layer.digest.Algorithm != "sha256" {
			return 0, fmt.Errorf("unsupported digest algorithm %q", layer.digest.Algorithm)
		}
		blobHash = sha256.New()
		raw = io.TeeReader(rc, blobHash)
	}
	stream, err := decompress(raw)
	if err != nil {
		return 0, err
	}
	defer stream.Close()
	tarHash := sha256.New()
	counter := &countingWriter{}
	tarStream := io.TeeReader(stream, io.MultiWriter(tarHash, counter))
	if err := applyLayer(ctx, root, tarStream); err != nil {
		return 0, err
	}
	// The digests cover the end-of-archive padding that tar stops before.
	if _, err := io.Copy(io.Discard, tarStream); err != nil {
		return 0, err
	}
	if blobHash != nil {
		if _, err := io.Copy(io.Discard, raw); err != nil {
			return 0, err
		}
		if got := hex.EncodeToString(blobHash.Sum(nil)); got != layer.digest.Hex {
			return 0, fmt.Errorf("content has digest sha256:%s, expected %s", got, layer.digest)
		}
	}
	if got := hex.EncodeToString(tarHash.Sum(nil)); got != diffID.Hex {
		return 0, fmt.Errorf("uncompressed content has digest sha256:%s, expected %s", got, diffID)
	}
	return counter.n, nil
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// decompress recognises gzip and zstd by their magic numbers rather than
// trusting media types, which docker save does not record.
func decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, nil
	case len(magic) == 4 && bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zr.IOReadCloser(), nil
	default:
		return io.NopCloser(br), nil
	}
}

func syncFilesystem(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// imageManifest follows an index down to the image manifest for this
// machine's platform. fetch returns the content a descriptor points to.
func imageManifest(mediaType types.MediaType, raw []byte, fetch func(v1.Descriptor) ([]byte, error)) (*v1.Manifest, error) {
	for depth := 0; depth < 4; depth++ {
		if mediaType == "" {
			mediaType = sniffMediaType(raw)
		}
		switch {
		case mediaType.IsIndex():
			idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
			if err != nil {
				return nil, fmt.Errorf("image index: %w", err)
			}
			desc, err := choosePlatform(idx)
			if err != nil {
				return nil, err
			}
			if raw, err = fetch(desc); err != nil {
				return nil, err
			}
			mediaType = desc.MediaType
		case mediaType.IsImage():
			m, err := v1.ParseManifest(bytes.NewReader(raw))
			if err != nil {
				return nil, fmt.Errorf("image manifest: %w", err)
			}
			return m, nil
		case mediaType.IsSchema1():
			return nil, fmt.Errorf("docker schema 1 manifests (%s) are not supported", mediaType)
		default:
			return nil, fmt.Errorf("unsupported manifest media type %q", mediaType)
		}
	}
	return nil, errors.New("image indexes nested too deep")
}

func sniffMediaType(raw []byte) types.MediaType {
	var probe struct {
		MediaType types.MediaType `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
		Config    json.RawMessage `json:"config"`
	}
	if json.Unmarshal(raw, &probe) != nil {
		return ""
	}
	switch {
	case probe.MediaType != "":
		return probe.MediaType
	case probe.Manifests != nil:
		return types.OCIImageIndex
	case probe.Config != nil:
		return types.OCIManifestSchema1
	}
	return ""
}

func choosePlatform(idx *v1.IndexManifest) (v1.Descriptor, error) {
	var offered []string
	for _, d := range idx.Manifests {
		if d.Platform == nil {
			continue
		}
		if d.Platform.OS == runtime.GOOS && d.Platform.Architecture == runtime.GOARCH {
			return d, nil
		}
		offered = append(offered, d.Platform.OS+"/"+d.Platform.Architecture)
	}
	if len(idx.Manifests) == 1 && idx.Manifests[0].Platform == nil {
		return idx.Manifests[0], nil
	}
	return v1.Descriptor{}, fmt.Errorf("no image for %s/%s in the index (it has %s)", runtime.GOOS, runtime.GOARCH, strings.Join(offered, ", "))
}

// verifyDigest checks small content read whole against its descriptor.
func verifyDigest(data []byte, want v1.Hash) error {
	got, _, err := v1.SHA256(bytes.NewReader(data))
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("content has digest %s, expected %s", got, want)
	}
	return nil
}
