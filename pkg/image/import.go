package image

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Annotations that name the images of an OCI image layout. containerd and
// BuildKit put the full name in the first and only the tag in the second;
// other tools put the full name in the second.
const (
	annotationContainerdName = "io.containerd.image.name"
	annotationRefName        = "org.opencontainers.image.ref.name"
)

// Import adds the images of a tarball to the store and returns their
// normalised references. It accepts what `docker save` writes (one image or
// several, each with its tags) and an OCI image layout whose index.json names
// images by annotation, either possibly compressed with gzip or zstd.
func (s *Store) Import(ctx context.Context, file string) ([]string, error) {
	lock, err := s.lockShared()
	if err != nil {
		return nil, err
	}
	defer lock.release()
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	defer f.Close()
	tarFile, err := s.uncompressedTar(f)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", file, err)
	}
	if tarFile != f {
		defer tarFile.Close()
	}
	a, err := openArchive(tarFile)
	if err != nil {
		return nil, fmt.Errorf("import %s: not a tar archive (want a docker save or OCI image layout tarball): %w", file, err)
	}
	var images []pendingImage
	switch {
	case a.has("manifest.json"):
		images, err = dockerArchiveImages(a)
	case a.has("index.json"):
		images, err = ociArchiveImages(a)
	default:
		err = fmt.Errorf("unknown format: the archive has neither manifest.json (docker save) nor index.json (OCI image layout)")
	}
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", file, err)
	}
	var refs []string
	for _, img := range images {
		if _, err := s.commit(ctx, img); err != nil {
			return refs, fmt.Errorf("import %s: %s: %w", file, img.refs[0], err)
		}
		refs = append(refs, img.refs...)
	}
	return refs, nil
}

// uncompressedTar returns f itself when it is not compressed, or else a
// temporary file (already unlinked) with its decompressed content, since
// reading members out of order needs a seekable tar.
func (s *Store) uncompressedTar(f *os.File) (*os.File, error) {
	magic := make([]byte, 4)
	n, _ := io.ReadFull(f, magic)
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	if !isCompressed(magic[:n]) {
		return f, nil
	}
	stream, err := decompress(bufio.NewReader(f))
	if err != nil {
		return nil, err
	}
	defer stream.Close()
	tmp, err := os.CreateTemp(s.tmpDir(), "import-")
	if err != nil {
		return nil, err
	}
	os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, stream); err != nil {
		tmp.Close()
		return nil, err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		tmp.Close()
		return nil, err
	}
	return tmp, nil
}

func isCompressed(magic []byte) bool {
	return bytes.HasPrefix(magic, []byte{0x1f, 0x8b}) || bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd})
}

// dockerArchiveImages reads manifest.json of a docker save archive, in both
// its classic layout (<id>/layer.tar) and the OCI-based one of docker 25+
// (blobs/sha256/<hex>).
func dockerArchiveImages(a *archive) ([]pendingImage, error) {
	data, err := a.readAll("manifest.json")
	if err != nil {
		return nil, err
	}
	var manifest tarball.Manifest
	if err := json.Unmarshal(data, &manifest); err != nil {
		return nil, fmt.Errorf("manifest.json: %w", err)
	}
	var images []pendingImage
	for _, d := range manifest {
		if len(d.RepoTags) == 0 {
			continue
		}
		img := pendingImage{}
		for _, tag := range d.RepoTags {
			ref, err := Resolve(tag)
			if err != nil {
				return nil, fmt.Errorf("manifest.json: %w", err)
			}
			img.refs = append(img.refs, ref)
		}
		if img.config, err = a.readAll(d.Config); err != nil {
			return nil, fmt.Errorf("config of %s: %w", d.RepoTags[0], err)
		}
		for _, layerPath := range d.Layers {
			if !a.has(layerPath) {
				return nil, fmt.Errorf("layer %s of %s is missing from the archive", layerPath, d.RepoTags[0])
			}
			img.layers = append(img.layers, pendingLayer{
				digest: digestFromBlobPath(layerPath),
				open:   archiveOpener(a, layerPath),
			})
		}
		images = append(images, img)
	}
	if len(images) == 0 {
		return nil, fmt.Errorf("manifest.json has no tagged image; tag the image before saving it")
	}
	return images, nil
}

// ociArchiveImages reads the images that index.json names.
func ociArchiveImages(a *archive) ([]pendingImage, error) {
	data, err := a.readAll("index.json")
	if err != nil {
		return nil, err
	}
	index, err := v1.ParseIndexManifest(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	fetch := func(desc v1.Descriptor) ([]byte, error) { return readOCIBlob(a, desc.Digest) }
	var images []pendingImage
	for _, desc := range index.Manifests {
		refName := desc.Annotations[annotationContainerdName]
		if refName == "" {
			refName = desc.Annotations[annotationRefName]
		}
		if refName == "" {
			continue
		}
		ref, err := Resolve(refName)
		if err != nil {
			return nil, fmt.Errorf("index.json: %w", err)
		}
		raw, err := fetch(desc)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
		m, err := imageManifest(desc.MediaType, raw, fetch)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
		img := pendingImage{refs: []string{ref}}
		if img.config, err = fetch(m.Config); err != nil {
			return nil, fmt.Errorf("config of %s: %w", ref, err)
		}
		for _, l := range m.Layers {
			blob := ociBlobPath(l.Digest)
			if !a.has(blob) {
				return nil, fmt.Errorf("layer %s of %s is missing from the archive", l.Digest, ref)
			}
			img.layers = append(img.layers, pendingLayer{digest: l.Digest, open: archiveOpener(a, blob)})
		}
		images = append(images, img)
	}
	if len(images) == 0 {
		return nil, fmt.Errorf("index.json names no image (annotation %s)", annotationRefName)
	}
	return images, nil
}

func ociBlobPath(h v1.Hash) string { return path.Join("blobs", h.Algorithm, h.Hex) }

func readOCIBlob(a *archive, h v1.Hash) ([]byte, error) {
	data, err := a.readAll(ociBlobPath(h))
	if err != nil {
		return nil, err
	}
	if err := verifyDigest(data, h); err != nil {
		return nil, fmt.Errorf("blob %s: %w", h, err)
	}
	return data, nil
}

// digestFromBlobPath recognises blobs/<algorithm>/<hex>, whose name is the
// digest of its content.
func digestFromBlobPath(p string) v1.Hash {
	dir, hexPart := path.Split(cleanMemberName(p))
	h, err := v1.NewHash(path.Base(dir) + ":" + hexPart)
	if err != nil || path.Dir(path.Clean(dir)) != "blobs" {
		return v1.Hash{}
	}
	return h
}

func archiveOpener(a *archive, member string) func(context.Context) (io.ReadCloser, error) {
	return func(context.Context) (io.ReadCloser, error) {
		r, err := a.open(member)
		if err != nil {
			return nil, err
		}
		return io.NopCloser(r), nil
	}
}
