package image

import (
	"archive/tar"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

func TestResolve(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "busybox:1.28.4", want: "docker.io/library/busybox:1.28.4"},
		{in: "busybox", want: "docker.io/library/busybox:latest"},
		{in: "nginx:1.9.1", want: "docker.io/library/nginx:1.9.1"},
		{in: "docker.io/busybox:1.28.4", want: "docker.io/library/busybox:1.28.4"},
		{in: "index.docker.io/library/busybox:1.28.4", want: "docker.io/library/busybox:1.28.4"},
		{in: "bitnami/redis:7", want: "docker.io/bitnami/redis:7"},
		{in: "registry.k8s.io/pause:3.10", want: "registry.k8s.io/pause:3.10"},
		{in: "127.0.0.1:5000/team/app", want: "127.0.0.1:5000/team/app:latest"},
		{in: "localhost:5000/app:v1", want: "localhost:5000/app:v1"},
		{
			in:   "busybox@sha256:0000000000000000000000000000000000000000000000000000000000000000",
			want: "docker.io/library/busybox@sha256:0000000000000000000000000000000000000000000000000000000000000000",
		},
		{in: "Busybox:1", wantErr: true},
		{in: "busybox:bad tag", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		got, err := Resolve(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("Resolve(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if got != tt.want {
			t.Errorf("Resolve(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestImport(t *testing.T) {
	busybox := randomImage(t, 2)
	nginx := randomImage(t, 3)
	tests := []struct {
		name    string
		tarball func(t *testing.T) string
		want    map[string]v1.Image // normalised ref -> image
	}{
		{
			name: "docker save, one image with two tags",
			tarball: func(t *testing.T) string {
				return writeDockerTar(t, map[string]v1.Image{"busybox:1.28.4": busybox, "busybox:latest": busybox})
			},
			want: map[string]v1.Image{"docker.io/library/busybox:1.28.4": busybox, "docker.io/library/busybox:latest": busybox},
		},
		{
			name: "docker save, two images",
			tarball: func(t *testing.T) string {
				return writeDockerTar(t, map[string]v1.Image{"busybox:1.28.4": busybox, "nginx:1.9.1": nginx})
			},
			want: map[string]v1.Image{"docker.io/library/busybox:1.28.4": busybox, "docker.io/library/nginx:1.9.1": nginx},
		},
		{
			name: "docker save compressed with gzip",
			tarball: func(t *testing.T) string {
				return gzipFile(t, writeDockerTar(t, map[string]v1.Image{"127.0.0.1:5000/app:v1": nginx}))
			},
			want: map[string]v1.Image{"127.0.0.1:5000/app:v1": nginx},
		},
		{
			name: "OCI image layout with ref.name annotations",
			tarball: func(t *testing.T) string {
				return writeOCITar(t, map[string]v1.Image{"docker.io/library/busybox:1.28.4": busybox, "nginx:1.9.1": nginx})
			},
			want: map[string]v1.Image{"docker.io/library/busybox:1.28.4": busybox, "docker.io/library/nginx:1.9.1": nginx},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t)
			refs, err := s.Import(context.Background(), tt.tarball(t))
			if err != nil {
				t.Fatal(err)
			}
			var wantRefs []string
			for ref := range tt.want {
				wantRefs = append(wantRefs, ref)
			}
			sort.Strings(wantRefs)
			sort.Strings(refs)
			if !reflect.DeepEqual(refs, wantRefs) {
				t.Fatalf("Import returned %v, want %v", refs, wantRefs)
			}
			images, err := s.List()
			if err != nil {
				t.Fatal(err)
			}
			if len(images) != len(tt.want) {
				t.Fatalf("List returned %d images, want %d", len(images), len(tt.want))
			}
			for _, got := range images {
				src := tt.want[got.Ref]
				if got.ID != configName(t, src) {
					t.Errorf("%s: ID %s, want the config digest %s", got.Ref, got.ID, configName(t, src))
				}
				if got.Size <= 0 {
					t.Errorf("%s: size %d", got.Ref, got.Size)
				}
				cf, _ := src.ConfigFile()
				if !got.Created.Equal(cf.Created.Time) {
					t.Errorf("%s: created %v, want %v", got.Ref, got.Created, cf.Created.Time)
				}
				rootfs, err := s.Unpack(context.Background(), got.Ref)
				if err != nil {
					t.Fatal(err)
				}
				ids := diffIDs(t, src)
				if len(rootfs.LowerDirs) != len(ids) {
					t.Fatalf("%s: %d lowerdirs, want %d", got.Ref, len(rootfs.LowerDirs), len(ids))
				}
				for i, d := range rootfs.LowerDirs {
					// Top layer first, as overlayfs wants.
					want := filepath.Join(s.Dir(), "layers", ids[len(ids)-1-i].Hex, "fs")
					if d != want {
						t.Errorf("%s: lowerdir %d is %s, want %s", got.Ref, i, d, want)
					}
				}
			}
		})
	}
}

func TestImportErrors(t *testing.T) {
	img := randomImage(t, 1)
	tests := []struct {
		name    string
		tarball func(t *testing.T) string
		want    string
	}{
		{
			name: "not a tarball",
			tarball: func(t *testing.T) string {
				p := filepath.Join(t.TempDir(), "notes.txt")
				os.WriteFile(p, []byte("these are not the images you are looking for\n"), 0o644)
				return p
			},
			want: "not a tar archive",
		},
		{
			name:    "missing file",
			tarball: func(t *testing.T) string { return filepath.Join(t.TempDir(), "absent.tar") },
			want:    "no such file",
		},
		{
			name:    "unknown format",
			tarball: func(t *testing.T) string { return writeTar(t, map[string]string{"hello.txt": "hi"}) },
			want:    "unknown format",
		},
		{
			name: "docker save without tags",
			tarball: func(t *testing.T) string {
				return writeTar(t, map[string]string{"manifest.json": `[{"Config":"c.json","RepoTags":null,"Layers":[]}]`})
			},
			want: "no tagged image",
		},
		{
			name: "docker save with a missing layer",
			tarball: func(t *testing.T) string {
				return writeTar(t, map[string]string{
					"manifest.json": `[{"Config":"c.json","RepoTags":["app:v1"],"Layers":["abc/layer.tar"]}]`,
					"c.json":        `{"rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}`,
				})
			},
			want: "layer abc/layer.tar of app:v1 is missing",
		},
		{
			name:    "OCI layout without names",
			tarball: func(t *testing.T) string { return writeOCITar(t, map[string]v1.Image{"": img}) },
			want:    "names no image",
		},
		{
			name: "bad tag in docker save",
			tarball: func(t *testing.T) string {
				return writeTar(t, map[string]string{"manifest.json": `[{"Config":"c.json","RepoTags":["UPPER:case"],"Layers":[]}]`})
			},
			want: `invalid image reference "UPPER:case"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t)
			path := tt.tarball(t)
			refs, err := s.Import(context.Background(), path)
			if !errorContains(err, tt.want) {
				t.Fatalf("Import error = %v, want one containing %q", err, tt.want)
			}
			if !errorContains(err, path) {
				t.Errorf("Import error %q does not name the file %s", err, path)
			}
			if len(refs) != 0 || len(listRefs(t, s)) != 0 {
				t.Errorf("a failed import left images: %v %v", refs, listRefs(t, s))
			}
		})
	}
}

func TestRemove(t *testing.T) {
	base := randomImage(t, 1)
	other := randomImage(t, 1)
	type step struct {
		remove      string
		wantErr     error
		wantRefs    []string
		wantLayers  []v1.Hash // present after the step
		wantMissing []v1.Hash // deleted by the step
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name: "untagging keeps layers until the last tag goes",
			steps: []step{
				{
					remove:     "busybox:latest",
					wantRefs:   []string{"docker.io/library/busybox:1.28.4", "docker.io/library/nginx:1.9.1"},
					wantLayers: append(diffIDs(t, base), diffIDs(t, other)...),
				},
				{
					remove:      "docker.io/library/busybox:1.28.4",
					wantRefs:    []string{"docker.io/library/nginx:1.9.1"},
					wantLayers:  diffIDs(t, other),
					wantMissing: diffIDs(t, base),
				},
				{remove: "busybox:1.28.4", wantErr: ErrNotFound, wantRefs: []string{"docker.io/library/nginx:1.9.1"}},
			},
		},
		{
			name: "by image ID removes every tag",
			steps: []step{
				{
					remove:      configName(t, base)[len("sha256:"):][:12],
					wantRefs:    []string{"docker.io/library/nginx:1.9.1"},
					wantMissing: diffIDs(t, base),
					wantLayers:  diffIDs(t, other),
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t)
			path := writeDockerTar(t, map[string]v1.Image{"busybox:1.28.4": base, "busybox:latest": base, "nginx:1.9.1": other})
			if _, err := s.Import(context.Background(), path); err != nil {
				t.Fatal(err)
			}
			for _, st := range tt.steps {
				err := s.Remove(st.remove)
				if !errors.Is(err, st.wantErr) {
					t.Fatalf("Remove(%q) = %v, want %v", st.remove, err, st.wantErr)
				}
				if got := listRefs(t, s); !reflect.DeepEqual(got, st.wantRefs) {
					t.Errorf("after Remove(%q): %v, want %v", st.remove, got, st.wantRefs)
				}
				for _, h := range st.wantLayers {
					if _, err := os.Stat(s.layerPath(h)); err != nil {
						t.Errorf("after Remove(%q): layer %s: %v", st.remove, h, err)
					}
				}
				for _, h := range st.wantMissing {
					if _, err := os.Stat(s.layerPath(h)); !os.IsNotExist(err) {
						t.Errorf("after Remove(%q): layer %s still there (%v)", st.remove, h, err)
					}
				}
			}
			// Only what the remaining images use stays: their manifest and config.
			blobs, _ := os.ReadDir(s.blobDir())
			if want := 2 * countImages(t, s); len(blobs) != want {
				t.Errorf("%d blobs left, want %d", len(blobs), want)
			}
		})
	}
}

func countImages(t *testing.T, s *Store) int {
	images, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, img := range images {
		ids[img.ID] = true
	}
	return len(ids)
}

// TestUnpackWhiteouts checks the layer directories that overlayfs will
// read, and then what a real overlay mount of them shows.
func TestUnpackWhiteouts(t *testing.T) {
	setuid := tarEntry{name: "bin/tool", typeflag: tar.TypeReg, content: "#!/bin/sh\n", mode: 0o4755, uid: 1000, gid: 1001}
	img := imageOf(t,
		v1.Config{
			Entrypoint:   []string{"/bin/tool"},
			Cmd:          []string{"--serve"},
			Env:          []string{"PATH=/bin"},
			WorkingDir:   "/srv",
			User:         "1000:1001",
			ExposedPorts: map[string]struct{}{"80/tcp": {}, "53/udp": {}},
		},
		[]tarEntry{
			dir("a/"), file("a/keep", "kept"), file("a/gone", "deleted above"),
			dir("b/"), file("b/old", "hidden by opaque"), dir("b/sub/"), file("b/sub/deep", "hidden too"),
			dir("bin/"), setuid,
		},
		[]tarEntry{
			file("a/.wh.gone", ""),
			dir("b/"), file("b/.wh..wh..opq", ""), file("b/new", "fresh"),
			symlink("link", "/a/keep"),
			file(".wh..wh.plnk", ""),
		},
	)
	s := openStore(t)
	if _, err := s.Import(context.Background(), writeDockerTar(t, map[string]v1.Image{"app:v1": img})); err != nil {
		t.Fatal(err)
	}
	rootfs, err := s.Unpack(context.Background(), "app:v1")
	if err != nil {
		t.Fatal(err)
	}
	wantConfig := Config{
		Entrypoint:   []string{"/bin/tool"},
		Cmd:          []string{"--serve"},
		Env:          []string{"PATH=/bin"},
		WorkingDir:   "/srv",
		User:         "1000:1001",
		ExposedPorts: []string{"53/udp", "80/tcp"},
	}
	if !reflect.DeepEqual(rootfs.Config, wantConfig) {
		t.Errorf("config = %+v, want %+v", rootfs.Config, wantConfig)
	}
	if rootfs.Ref != "docker.io/library/app:v1" || rootfs.ID != configName(t, img) {
		t.Errorf("rootfs names %s %s", rootfs.Ref, rootfs.ID)
	}
	if len(rootfs.LowerDirs) != 2 {
		t.Fatalf("lowerdirs %v, want 2", rootfs.LowerDirs)
	}
	top, bottom := rootfs.LowerDirs[0], rootfs.LowerDirs[1]

	checks := []struct {
		path  string
		check func(st *unix.Stat_t) string
	}{
		{filepath.Join(top, "a/gone"), func(st *unix.Stat_t) string {
			if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 || st.Uid != 0 || st.Gid != 0 {
				return "want a 0:0 character device owned by root"
			}
			return ""
		}},
		{filepath.Join(bottom, "bin/tool"), func(st *unix.Stat_t) string {
			if st.Mode&0o7777 != 0o4755 || st.Uid != 1000 || st.Gid != 1001 {
				return "want mode 4755 owned by 1000:1001"
			}
			return ""
		}},
		{filepath.Join(bottom, "a/keep"), func(st *unix.Stat_t) string {
			if st.Mtim.Sec != 1500000000 {
				return "want the mtime of the tar entry"
			}
			return ""
		}},
		{filepath.Join(bottom, "b"), func(st *unix.Stat_t) string {
			if st.Mtim.Sec != 1500000000 {
				return "directory mtime not restored after its entries"
			}
			return ""
		}},
	}
	for _, c := range checks {
		var st unix.Stat_t
		if err := unix.Lstat(c.path, &st); err != nil {
			t.Errorf("%s: %v", c.path, err)
			continue
		}
		if problem := c.check(&st); problem != "" {
			t.Errorf("%s: mode %o uid %d gid %d rdev %d: %s", c.path, st.Mode, st.Uid, st.Gid, st.Rdev, problem)
		}
	}
	opaque := make([]byte, 8)
	n, err := unix.Lgetxattr(filepath.Join(top, "b"), overlayOpaque, opaque)
	if err != nil || string(opaque[:n]) != "y" {
		t.Errorf("b in the top layer: %s = %q, %v; want y", overlayOpaque, opaque[:n], err)
	}
	for _, name := range []string{"a/.wh.gone", "b/.wh..wh..opq", ".wh..wh.plnk"} {
		if _, err := os.Lstat(filepath.Join(top, name)); !os.IsNotExist(err) {
			t.Errorf("whiteout marker %s was extracted as a file", name)
		}
	}

	merged := mountOverlay(t, rootfs.LowerDirs)
	view := []struct {
		path    string
		content string // "" means absent
	}{
		{"a/keep", "kept"},
		{"a/gone", ""},
		{"b/old", ""},
		{"b/sub/deep", ""},
		{"b/new", "fresh"},
		{"link", "kept"},
	}
	for _, v := range view {
		data, err := os.ReadFile(filepath.Join(merged, v.path))
		if v.content == "" {
			if !os.IsNotExist(err) {
				t.Errorf("merged %s: present (%q, %v), want it deleted", v.path, data, err)
			}
			continue
		}
		// The symlink is absolute, as inside the container; resolve it by hand.
		if v.path == "link" {
			target, lerr := os.Readlink(filepath.Join(merged, v.path))
			if lerr != nil {
				t.Errorf("merged link: %v", lerr)
				continue
			}
			data, err = os.ReadFile(filepath.Join(merged, target))
		}
		if err != nil || string(data) != v.content {
			t.Errorf("merged %s = %q, %v; want %q", v.path, data, err, v.content)
		}
	}
}

// mountOverlay mounts a read-only overlay of lowerdirs and unmounts it when
// the test ends, whatever happens.
func mountOverlay(t *testing.T, lowerdirs []string) string {
	t.Helper()
	target := t.TempDir()
	opts := "lowerdir=" + lowerdirs[0]
	for _, d := range lowerdirs[1:] {
		opts += ":" + d
	}
	if err := unix.Mount("overlay", target, "overlay", unix.MS_RDONLY, opts); err != nil {
		t.Fatalf("mount overlay (tests run as root): %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", target, err)
		}
	})
	return target
}

func TestLayerCannotEscape(t *testing.T) {
	outside := t.TempDir()
	tests := []struct {
		name    string
		entries []tarEntry
		want    string
	}{
		{
			name:    "write through a symlink",
			entries: []tarEntry{symlink("escape", outside), file("escape/owned", "x")},
			want:    "not a directory in this layer",
		},
		{
			name:    "hard link through a symlink",
			entries: []tarEntry{symlink("escape", outside), {name: "h", typeflag: tar.TypeLink, linkname: "escape/secret"}},
			want:    "is not a directory of this layer",
		},
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t)
			img := imageOf(t, v1.Config{}, tt.entries)
			_, err := s.Import(context.Background(), writeDockerTar(t, map[string]v1.Image{"evil:v1": img}))
			if !errorContains(err, tt.want) {
				t.Fatalf("Import = %v, want an error containing %q", err, tt.want)
			}
			entries, _ := os.ReadDir(outside)
			if len(entries) != 1 {
				t.Errorf("the layer wrote outside its directory: %v", entries)
			}
			if tmp, _ := os.ReadDir(s.tmpDir()); len(tmp) != 0 {
				t.Errorf("a failed import left %d entries in tmp", len(tmp))
			}
		})
	}
	// ".." in names is cleaned to stay inside the layer.
	s := openStore(t)
	img := imageOf(t, v1.Config{}, []tarEntry{file("../../climb", "c")})
	if _, err := s.Import(context.Background(), writeDockerTar(t, map[string]v1.Image{"climb:v1": img})); err != nil {
		t.Fatal(err)
	}
	rootfs, err := s.Unpack(context.Background(), "climb:v1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(rootfs.LowerDirs[0], "climb")); err != nil {
		t.Errorf("../../climb was not kept inside the layer: %v", err)
	}
}

// TestLayersExtractedOnce imports images sharing a layer and checks the
// shared layer directory is the same one, never extracted again.
func TestLayersExtractedOnce(t *testing.T) {
	s := openStore(t)
	base := imageOf(t, v1.Config{}, []tarEntry{file("etc/os-release", "base")})
	derived := imageOf(t, v1.Config{}, []tarEntry{file("etc/os-release", "base")}, []tarEntry{file("app", "app")})
	shared := diffIDs(t, base)[0]
	if diffIDs(t, derived)[0] != shared {
		t.Fatal("test images do not share their first layer")
	}
	inode := func() uint64 {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(s.layerPath(shared), "fs", "etc", "os-release"), &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	if _, err := s.Import(context.Background(), writeDockerTar(t, map[string]v1.Image{"base:v1": base})); err != nil {
		t.Fatal(err)
	}
	first := inode()
	for _, ref := range []string{"derived:v1", "base:v1"} {
		img := derived
		if ref == "base:v1" {
			img = base
		}
		if _, err := s.Import(context.Background(), writeDockerTar(t, map[string]v1.Image{ref: img})); err != nil {
			t.Fatal(err)
		}
		if got := inode(); got != first {
			t.Errorf("importing %s extracted the shared layer again", ref)
		}
	}
}

// TestConcurrentImports imports into one directory from two Stores at once,
// as `stead image import` does beside a running `stead up`.
func TestConcurrentImports(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "images")
	shared := []tarEntry{file("lib/shared.so", "shared by both")}
	images := map[string]v1.Image{
		"one:v1": imageOf(t, v1.Config{}, shared, []tarEntry{file("one", "1")}),
		"two:v1": imageOf(t, v1.Config{}, shared, []tarEntry{file("two", "2")}),
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(images))
	start := make(chan struct{})
	for ref, img := range images {
		path := writeDockerTar(t, map[string]v1.Image{ref: img})
		s, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := s.Import(context.Background(), path)
			errs <- err
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"docker.io/library/one:v1", "docker.io/library/two:v1"}
	if got := listRefs(t, s); !reflect.DeepEqual(got, want) {
		t.Fatalf("after concurrent imports: %v, want %v", got, want)
	}
	for _, ref := range want {
		if _, err := s.Unpack(context.Background(), ref); err != nil {
			t.Error(err)
		}
	}
}

// TestKilledImportLeavesNothing simulates the leftovers of a kill -9 in the
// middle of extracting a layer: they are invisible and cleaned up.
func TestKilledImportLeavesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "images")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	half := filepath.Join(s.tmpDir(), "layer-123", "fs", "usr")
	if err := os.MkdirAll(half, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.tmpDir(), ".index.json.1"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if images, err := s.List(); err != nil || len(images) != 0 {
		t.Fatalf("List = %v, %v; want nothing", images, err)
	}
	// A live importer holds the store: its work must survive another Open.
	busy, err := s.lockShared()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(half); err != nil {
		t.Errorf("Open deleted the work of a live importer: %v", err)
	}
	busy.release()
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(s.tmpDir()); len(entries) != 0 {
		t.Errorf("Open left %d stale entries in tmp", len(entries))
	}
}

func TestUnpackUnknown(t *testing.T) {
	s := openStore(t)
	_, err := s.Unpack(context.Background(), "busybox:1.28.4")
	if !errors.Is(err, ErrNotFound) || !errorContains(err, "busybox:1.28.4") {
		t.Fatalf("Unpack of an absent image = %v, want ErrNotFound naming it", err)
	}
}
