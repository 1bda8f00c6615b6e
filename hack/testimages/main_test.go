package main

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/steadhq/stead/pkg/image"
)

// TestBuild builds both images from Debian's packages (about a minute) and
// checks what is inside, then runs them in a chroot.
func TestBuild(t *testing.T) {
	out := t.TempDir()
	if err := build(out, t.Logf); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		file      string
		ref       string
		wantCmd   []string
		wantFiles []string
		wantLinks map[string]string
		// run is a command to run chrooted in the image, with the output it must print.
		run     []string
		wantRun string
	}{
		{
			file:      "busybox.tar",
			ref:       busyboxRef,
			wantCmd:   []string{"sh"},
			wantFiles: []string{"bin/busybox", "bin/nslookup", "etc/passwd", "etc/group"},
			wantLinks: map[string]string{
				"bin/sh": "busybox", "bin/hostname": "busybox", "bin/wget": "busybox",
				"bin/httpd": "busybox", "bin/sleep": "busybox", "bin/cat": "busybox", "bin/ls": "busybox", "bin/echo": "busybox",
			},
			// The shell finds 1.28's nslookup, not busybox's own applet.
			run:     []string{"/bin/sh", "-c", "echo hello from $(ls /bin/busybox) $(nslookup 2>&1 | head -n 1)"},
			wantRun: "hello from /bin/busybox BusyBox v1.28.4 multi-call binary.\n",
		},
		{
			file:    "nginx.tar",
			ref:     nginxRef,
			wantCmd: []string{"nginx", "-g", "daemon off;"},
			wantFiles: []string{
				"usr/sbin/nginx", "etc/nginx/nginx.conf", "etc/nginx/mime.types", "usr/share/nginx/html/index.html",
				"lib/x86_64-linux-gnu/libc.so.6", "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
				"usr/lib/x86_64-linux-gnu/libssl.so.3", "usr/lib/x86_64-linux-gnu/libcrypto.so.3",
				"usr/lib/x86_64-linux-gnu/libpcre2-8.so.0", "lib/x86_64-linux-gnu/libz.so.1", "lib/x86_64-linux-gnu/libcrypt.so.1",
				"bin/busybox",
			},
			wantLinks: map[string]string{
				"bin/sh":                     "busybox",
				"bin/hostname":               "busybox",
				"lib64/ld-linux-x86-64.so.2": "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
				"var/log/nginx/access.log":   "/dev/stdout",
				"var/log/nginx/error.log":    "/dev/stderr",
			},
			// The configuration test parses nginx.conf, loads mime.types, looks
			// the nginx user up and opens the logs, with the image's own libraries.
			run:     []string{"/usr/sbin/nginx", "-t", "-g", "daemon off;"},
			wantRun: "test is successful",
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			tag, err := name.NewTag(tt.ref)
			if err != nil {
				t.Fatal(err)
			}
			img, err := tarball.ImageFromPath(filepath.Join(out, tt.file), &tag)
			if err != nil {
				t.Fatal(err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cf.Config.Cmd, tt.wantCmd) {
				t.Errorf("Cmd = %q, want %q", cf.Config.Cmd, tt.wantCmd)
			}
			root := t.TempDir()
			files := extract(t, mutate.Extract(img), root)
			for _, f := range tt.wantFiles {
				if files[f] != tar.TypeReg {
					t.Errorf("%s is not a regular file in the image", f)
				}
			}
			for link, target := range tt.wantLinks {
				if got, err := os.Readlink(filepath.Join(root, link)); err != nil || got != target {
					t.Errorf("%s -> %q (%v), want -> %q", link, got, err, target)
				}
			}
			if err := os.MkdirAll(filepath.Join(root, "dev"), 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("chroot", append([]string{root}, tt.run...)...)
			output, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(output), tt.wantRun) {
				t.Errorf("chroot %s: %v\n%s\nwant output containing %q", strings.Join(tt.run, " "), err, output, tt.wantRun)
			}
		})
	}

	t.Run("through the image store", func(t *testing.T) {
		runFromStore(t, out, tests[0].run, tests[0].wantRun, tests[1].run, tests[1].wantRun)
	})

	// A second run finds the tarballs up to date and leaves them alone.
	before := modTimes(t, out)
	time.Sleep(10 * time.Millisecond)
	if err := build(out, t.Logf); err != nil {
		t.Fatal(err)
	}
	if after := modTimes(t, out); !reflect.DeepEqual(before, after) {
		t.Errorf("a second build rewrote the tarballs: %v then %v", before, after)
	}
}

// runFromStore imports both tarballs into a pkg/image store, mounts each
// image's layers with overlayfs as the runtime will, and runs a command in it.
func runFromStore(t *testing.T, out string, busyboxRun []string, busyboxWant string, nginxRun []string, nginxWant string) {
	store, err := image.Open(filepath.Join(t.TempDir(), "images"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range outputs {
		if _, err := store.Import(context.Background(), filepath.Join(out, f)); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		ref  string
		run  []string
		want string
	}{
		{"busybox:1.28.4", busyboxRun, busyboxWant},
		{"docker.io/library/nginx:1.9.1", nginxRun, nginxWant},
	}
	for _, c := range cases {
		rootfs, err := store.Unpack(context.Background(), c.ref)
		if err != nil {
			t.Fatal(err)
		}
		scratch := t.TempDir()
		upper, work, merged := filepath.Join(scratch, "upper"), filepath.Join(scratch, "work"), filepath.Join(scratch, "merged")
		for _, d := range []string{upper, work, merged} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		opts := "lowerdir=" + strings.Join(rootfs.LowerDirs, ":") + ",upperdir=" + upper + ",workdir=" + work
		if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
			t.Fatalf("mount overlay: %v", err)
		}
		t.Cleanup(func() {
			if err := unix.Unmount(merged, unix.MNT_DETACH); err != nil {
				t.Errorf("unmount %s: %v", merged, err)
			}
		})
		if err := os.MkdirAll(filepath.Join(merged, "dev"), 0o755); err != nil {
			t.Fatal(err)
		}
		output, err := exec.Command("chroot", append([]string{merged}, c.run...)...).CombinedOutput()
		if err != nil || !strings.Contains(string(output), c.want) {
			t.Errorf("%s: chroot %s: %v\n%s\nwant output containing %q", c.ref, strings.Join(c.run, " "), err, output, c.want)
		}
	}
}

func modTimes(t *testing.T, dir string) map[string]time.Time {
	times := map[string]time.Time{}
	for _, o := range outputs {
		info, err := os.Stat(filepath.Join(dir, o))
		if err != nil {
			t.Fatal(err)
		}
		times[o] = info.ModTime()
	}
	return times
}

// extract writes the flattened image under root and returns its entries'
// types by path.
func extract(t *testing.T, rc io.ReadCloser, root string) map[string]byte {
	t.Helper()
	defer rc.Close()
	types := map[string]byte{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		rel := strings.TrimSuffix(hdr.Name, "/")
		types[rel] = hdr.Typeflag
		target := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			t.Fatal(err)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(target, os.FileMode(hdr.Mode)&os.ModePerm)
		case tar.TypeSymlink:
			err = os.Symlink(hdr.Linkname, target)
		case tar.TypeReg:
			var data bytes.Buffer
			if _, err = io.Copy(&data, tr); err == nil {
				err = os.WriteFile(target, data.Bytes(), os.FileMode(hdr.Mode)&os.ModePerm)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return types
}
