package image

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// RootFS is what the runtime needs to start a container of an image.
type RootFS struct {
	// Ref and ID are the image's normalised reference and config digest.
	Ref string
	ID  string
	// LowerDirs are the image's layer directories in the order overlayfs's
	// lowerdir option wants them: the top layer first. An image without
	// layers gets one empty directory, since overlayfs needs a lowerdir.
	LowerDirs []string
	Config    Config
}

// Config is the part of an image config that decides how its containers run.
type Config struct {
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	User       string
	// ExposedPorts are like "80/tcp", sorted.
	ExposedPorts []string
	StopSignal   string
	Labels       map[string]string
}

// Unpack returns the root filesystem layers and config of the image that ref
// names. Layers were extracted once, when the image was imported or pulled,
// so this only reads metadata; it checks that every layer is still there.
func (s *Store) Unpack(ctx context.Context, ref string) (RootFS, error) {
	if err := ctx.Err(); err != nil {
		return RootFS{}, err
	}
	refs, err := s.lookup(ref)
	if err != nil {
		return RootFS{}, err
	}
	idx, err := s.readIndex()
	if err != nil {
		return RootFS{}, err
	}
	entry, ok := idx.Images[refs[0]]
	if !ok {
		return RootFS{}, fmt.Errorf("%s: %w", ref, ErrNotFound)
	}
	m, err := s.readManifest(entry.Manifest)
	if err != nil {
		return RootFS{}, fmt.Errorf("unpack %s: %w", ref, err)
	}
	rawConfig, err := s.readBlob(m.Config.Digest)
	if err != nil {
		return RootFS{}, fmt.Errorf("unpack %s: %w", ref, err)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(rawConfig))
	if err != nil {
		return RootFS{}, fmt.Errorf("unpack %s: config: %w", ref, err)
	}
	rootfs := RootFS{Ref: refs[0], ID: entry.ID, Config: runConfig(cfg.Config)}
	for i := len(m.Layers) - 1; i >= 0; i-- {
		dir := filepath.Join(s.layerPath(m.Layers[i].Digest), "fs")
		if _, err := os.Stat(dir); err != nil {
			return RootFS{}, fmt.Errorf("unpack %s: layer %s is missing from the store; pull or import the image again: %w", ref, m.Layers[i].Digest, err)
		}
		rootfs.LowerDirs = append(rootfs.LowerDirs, dir)
	}
	if len(rootfs.LowerDirs) == 0 {
		empty := filepath.Join(s.dir, "empty")
		if err := os.MkdirAll(empty, 0o755); err != nil {
			return RootFS{}, err
		}
		rootfs.LowerDirs = []string{empty}
	}
	return rootfs, nil
}

func runConfig(c v1.Config) Config {
	out := Config{
		Entrypoint: c.Entrypoint,
		Cmd:        c.Cmd,
		Env:        c.Env,
		WorkingDir: c.WorkingDir,
		User:       c.User,
		StopSignal: c.StopSignal,
		Labels:     c.Labels,
	}
	for port := range c.ExposedPorts {
		out.ExposedPorts = append(out.ExposedPorts, port)
	}
	sort.Strings(out.ExposedPorts)
	return out
}
