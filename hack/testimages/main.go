// Command testimages makes real container images offline, from Debian
// packages, for the tests of a machine that can reach Debian's apt
// repositories but no container registry:
//
//	busybox.tar  busybox:1.28.4 from busybox-static, every applet linked in /bin
//	nginx.tar    nginx:1.9.1 from Debian's nginx, with the shared libraries it
//	             needs and a configuration that serves /usr/share/nginx/html
//	             on port 80 and logs to /dev/stdout and /dev/stderr
//
// Both are docker save tarballs, for `stead image import`. The tags are the
// ones the tests' manifests use; the software inside is Debian's current one.
//
//	go run ./hack/testimages -out DIR
//
// It does nothing when both tarballs are newer than its own source.
package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const (
	busyboxRef = "busybox:1.28.4"
	nginxRef   = "nginx:1.9.1"
	defaultEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// buildTime is the fixed timestamp of every file and image, so that the
// same packages give the same image IDs.
var buildTime = time.Date(2015, 6, 1, 0, 0, 0, 0, time.UTC)

func main() {
	out := flag.String("out", "", "directory to write busybox.tar and nginx.tar into")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "usage: go run ./hack/testimages -out DIR")
		os.Exit(2)
	}
	if err := build(*out, log.Printf); err != nil {
		fmt.Fprintln(os.Stderr, "testimages:", err)
		os.Exit(1)
	}
}

// outputs are the tarballs build writes, by file name.
var outputs = []string{"busybox.tar", "nginx.tar"}

func build(out string, logf func(string, ...any)) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	if upToDate(out) {
		logf("%s: busybox.tar and nginx.tar are up to date", out)
		return nil
	}
	if runtime.GOOS != "linux" {
		return fmt.Errorf("builds only on Linux (it runs dpkg-deb and the package's busybox)")
	}
	if err := ensureTools(logf); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "testimages-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	apt := &aptCache{dir: filepath.Join(work, "debs"), logf: logf, downloaded: map[string]string{}}
	if err := os.MkdirAll(apt.dir, 0o755); err != nil {
		return err
	}

	busybox, err := buildBusybox(apt, filepath.Join(work, "busybox"))
	if err != nil {
		return fmt.Errorf("busybox: %w", err)
	}
	if err := writeImage(filepath.Join(out, "busybox.tar"), busyboxRef, busybox); err != nil {
		return err
	}
	logf("wrote %s (%s)", filepath.Join(out, "busybox.tar"), busyboxRef)

	nginx, err := buildNginx(apt, filepath.Join(work, "nginx"))
	if err != nil {
		return fmt.Errorf("nginx: %w", err)
	}
	if err := writeImage(filepath.Join(out, "nginx.tar"), nginxRef, nginx); err != nil {
		return err
	}
	logf("wrote %s (%s)", filepath.Join(out, "nginx.tar"), nginxRef)
	return nil
}

// upToDate reports whether every output exists and is newer than this
// program's source (or, without the source at hand, its binary).
func upToDate(out string) bool {
	program := programTime()
	for _, o := range outputs {
		info, err := os.Stat(filepath.Join(out, o))
		if err != nil || !info.ModTime().After(program) {
			return false
		}
	}
	return true
}

// sourceDir is this program's source directory, where ./nslookup is.
func sourceDir() string {
	if _, self, _, ok := runtime.Caller(0); ok && filepath.IsAbs(self) {
		return filepath.Dir(self)
	}
	return "hack/testimages" // run from the repository's root, as the Makefile does
}

// goTool is the go command: $GO as the Makefile passes it, else the one on
// PATH, else where the Go tarball installs it.
func goTool() string {
	if p := os.Getenv("GO"); p != "" {
		return p
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

func programTime() time.Time {
	var newest time.Time
	if _, self, _, ok := runtime.Caller(0); ok {
		sources, _ := filepath.Glob(filepath.Join(filepath.Dir(self), "*.go"))
		nslookup, _ := filepath.Glob(filepath.Join(filepath.Dir(self), "nslookup", "*.go"))
		sources = append(sources, nslookup...)
		for _, s := range sources {
			if strings.HasSuffix(s, "_test.go") {
				continue
			}
			if info, err := os.Stat(s); err == nil && info.ModTime().After(newest) {
				newest = info.ModTime()
			}
		}
	}
	if newest.IsZero() {
		if exe, err := os.Executable(); err == nil {
			if info, err := os.Stat(exe); err == nil {
				newest = info.ModTime()
			}
		}
	}
	if newest.IsZero() {
		newest = time.Now()
	}
	return newest
}

// ensureTools installs dpkg-deb and apt-get's download support if missing;
// both come with any Debian, so this is for trimmed-down machines.
func ensureTools(logf func(string, ...any)) error {
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("apt-get not found: this builder needs Debian's apt")
	}
	if _, err := exec.LookPath("dpkg-deb"); err == nil {
		return nil
	}
	logf("installing dpkg")
	return run("", "apt-get", "install", "-y", "-qq", "--no-install-recommends", "dpkg")
}

func run(dir string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	var output bytes.Buffer
	cmd.Stdout = &output
	cmd.Stderr = &output
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, strings.TrimSpace(output.String()))
	}
	return nil
}

// aptCache downloads packages once per build.
type aptCache struct {
	dir        string
	logf       func(string, ...any)
	downloaded map[string]string // package -> .deb path
	updated    bool
}

func (a *aptCache) deb(pkg string) (string, error) {
	if p, ok := a.downloaded[pkg]; ok {
		return p, nil
	}
	before, _ := filepath.Glob(filepath.Join(a.dir, "*.deb"))
	err := run(a.dir, "apt-get", "download", "-q", pkg)
	if err != nil && !a.updated {
		// The package lists may be missing or stale on a fresh machine.
		a.logf("apt-get download %s failed; running apt-get update", pkg)
		a.updated = true
		if uerr := run("", "apt-get", "update", "-qq"); uerr != nil {
			return "", uerr
		}
		err = run(a.dir, "apt-get", "download", "-q", pkg)
	}
	if err != nil {
		return "", err
	}
	after, _ := filepath.Glob(filepath.Join(a.dir, "*.deb"))
	for _, p := range after {
		if !contains(before, p) {
			a.downloaded[pkg] = p
			a.logf("downloaded %s", filepath.Base(p))
			return p, nil
		}
	}
	return "", fmt.Errorf("apt-get download %s wrote no .deb", pkg)
}

// extract unpacks the packages into root, as dpkg would install them.
func (a *aptCache) extract(root string, pkgs ...string) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	for _, pkg := range pkgs {
		deb, err := a.deb(pkg)
		if err != nil {
			return err
		}
		if err := run("", "dpkg-deb", "-x", deb, root); err != nil {
			return err
		}
	}
	return nil
}

// libraryDepends follows the Depends of pkg through the packages that ship
// shared libraries (lib*, zlib*), which is where a binary's sonames live.
func (a *aptCache) libraryDepends(pkg string) ([]string, error) {
	seen := map[string]bool{}
	queue := []string{pkg}
	var libs []string
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		deb, err := a.deb(p)
		if err != nil {
			return nil, err
		}
		out, err := exec.Command("dpkg-deb", "-f", deb, "Depends", "Pre-Depends").Output()
		if err != nil {
			return nil, fmt.Errorf("dpkg-deb -f %s: %w", deb, err)
		}
		for _, dep := range parseDepends(string(out)) {
			if seen[dep] || !(strings.HasPrefix(dep, "lib") || strings.HasPrefix(dep, "zlib")) {
				continue
			}
			seen[dep] = true
			libs = append(libs, dep)
			queue = append(queue, dep)
		}
	}
	sort.Strings(libs)
	return libs, nil
}

// parseDepends reads the package names of "Depends: a (>= 1), b | c"
// fields, taking the first of alternatives.
func parseDepends(fields string) []string {
	var names []string
	for _, line := range strings.Split(fields, "\n") {
		_, value, ok := strings.Cut(line, ":")
		if !ok {
			value = line
		}
		for _, dep := range strings.Split(value, ",") {
			first, _, _ := strings.Cut(dep, "|")
			pkgName, _, _ := strings.Cut(strings.TrimSpace(first), " ")
			pkgName, _, _ = strings.Cut(pkgName, ":")
			if pkgName = strings.TrimSpace(pkgName); pkgName != "" {
				names = append(names, pkgName)
			}
		}
	}
	return names
}

func buildBusybox(apt *aptCache, work string) (v1.Image, error) {
	pkgRoot := filepath.Join(work, "pkg")
	if err := apt.extract(pkgRoot, "busybox-static"); err != nil {
		return nil, err
	}
	root := newRootfs(filepath.Join(work, "rootfs"))
	if err := installBusybox(root, pkgRoot); err != nil {
		return nil, err
	}
	// 1.28's nslookup, which honours resolv.conf's search domains (see
	// ./nslookup), in place of the later applet.
	nslookup := filepath.Join(work, "nslookup")
	build := exec.Command(goTool(), "build", "-trimpath", "-ldflags=-s -w", "-o", nslookup, "./nslookup")
	build.Dir, build.Env = sourceDir(), append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build nslookup: %v\n%s", err, out)
	}
	if err := os.Remove(filepath.Join(root.dir, "bin/nslookup")); err != nil {
		return nil, err
	}
	// Debian's busybox runs its own applets before looking in PATH (it is
	// built as a standalone rescue shell), so sh would never find ours.
	if err := renameApplet(filepath.Join(root.dir, "bin/busybox"), "nslookup", "nslookuq"); err != nil {
		return nil, err
	}
	root.copyFile(nslookup, "bin/nslookup", 0o755)
	root.writeFile("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n", 0o644)
	root.writeFile("etc/group", "root:x:0:\nnobody:x:65534:\n", 0o644)
	root.mkdir("root", 0o700)
	root.mkdir("tmp", 0o1777)
	root.mkdir("home", 0o755)
	root.mkdir("var/www", 0o755)
	root.mkdir("usr/sbin", 0o755)
	if root.err != nil {
		return nil, root.err
	}
	return singleLayerImage(root.dir, v1.Config{Env: []string{defaultEnv}, Cmd: []string{"sh"}})
}

// installBusybox puts busybox-static's binary in /bin with a link per
// applet, checking the applets the tests and the tutorial use are there.
func installBusybox(root *rootfs, pkgRoot string) error {
	root.copyFile(filepath.Join(pkgRoot, "bin/busybox"), "bin/busybox", 0o755)
	// The binary is static, so the build machine can ask it for its applets.
	list, err := exec.Command(filepath.Join(pkgRoot, "bin/busybox"), "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	applets := strings.Fields(string(list))
	for _, want := range []string{"sh", "hostname", "nslookup", "wget", "httpd", "sleep", "cat", "ls", "echo", "nc", "ps", "mkdir", "rm", "touch", "env", "true", "false", "test", "date", "id"} {
		if !contains(applets, want) {
			return fmt.Errorf("busybox-static has no %s applet", want)
		}
	}
	for _, applet := range applets {
		if applet != "busybox" {
			root.symlink("busybox", "bin/"+applet)
		}
	}
	return root.err
}

// renameApplet renames an applet in busybox's table of applet names, a
// run of NUL-terminated names that busybox binary-searches, so that the
// name is no longer an applet. The new name has the old one's length and
// keeps its place in the order.
func renameApplet(binary, from, to string) error {
	if len(from) != len(to) {
		return fmt.Errorf("rename applet %s to %s: names differ in length", from, to)
	}
	data, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	entry := []byte("\x00" + from + "\x00")
	if n := bytes.Count(data, entry); n != 1 {
		return fmt.Errorf("rename applet %s: found %d times in %s, want once", from, n, binary)
	}
	i := bytes.Index(data, entry)
	copy(data[i+1:], to)
	return os.WriteFile(binary, data, 0o755)
}

// nginxConf runs nginx as the official image does: in the foreground (the
// image's command adds `daemon off;`; nginx refuses the directive twice),
// serving /usr/share/nginx/html on port 80, logging to the container's
// stdout and stderr.
const nginxConf = `user nginx;
worker_processes 1;
pid /run/nginx.pid;
error_log /dev/stderr notice;

events {
    worker_connections 1024;
}

http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /dev/stdout;
    sendfile on;
    keepalive_timeout 65;

    server {
        listen 80;
        server_name localhost;
        location / {
            root /usr/share/nginx/html;
            index index.html index.htm;
        }
        error_page 500 502 503 504 /50x.html;
        location = /50x.html {
            root /usr/share/nginx/html;
        }
    }
}
`

const indexHTML = `<!DOCTYPE html>
<html>
<head><title>Welcome to nginx!</title></head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and working.</p>
</body>
</html>
`

func buildNginx(apt *aptCache, work string) (v1.Image, error) {
	pkgRoot := filepath.Join(work, "pkg")
	libs, err := apt.libraryDepends("nginx")
	if err != nil {
		return nil, err
	}
	if err := apt.extract(pkgRoot, append([]string{"nginx", "nginx-common", "busybox-static"}, libs...)...); err != nil {
		return nil, err
	}
	root := newRootfs(filepath.Join(work, "rootfs"))
	// The official image is Debian with a shell and the usual tools, which
	// the seed's `kubectl exec web-0 -- sh -c ...` relies on.
	if err := installBusybox(root, pkgRoot); err != nil {
		return nil, err
	}
	const binary = "usr/sbin/nginx"
	root.copyFile(filepath.Join(pkgRoot, binary), binary, 0o755)
	if root.err != nil {
		return nil, root.err
	}
	interp, needed, err := sharedLibraries(pkgRoot, binary)
	if err != nil {
		return nil, err
	}
	for _, lib := range needed {
		// With the package's mode: the kernel runs the loader only if executable.
		info, err := os.Stat(filepath.Join(pkgRoot, lib))
		if err != nil {
			return nil, err
		}
		root.copyFile(filepath.Join(pkgRoot, lib), lib, info.Mode().Perm())
	}
	// The loader is one of the libraries too (libc names it); the path the
	// binary asks for points at it, as in Debian.
	if !contains(needed, interp) {
		loader := ""
		for _, lib := range needed {
			if path.Base(lib) == path.Base(interp) {
				loader = lib
			}
		}
		if loader == "" {
			return nil, fmt.Errorf("program interpreter /%s is not among the libraries %v", interp, needed)
		}
		root.symlink("/"+loader, interp)
	}
	// Debian's configuration files (mime.types and friends), with our nginx.conf.
	if err := copyTree(filepath.Join(pkgRoot, "etc/nginx"), filepath.Join(root.dir, "etc/nginx")); err != nil {
		return nil, err
	}
	root.writeFile("etc/nginx/nginx.conf", nginxConf, 0o644)
	root.writeFile("usr/share/nginx/html/index.html", indexHTML, 0o644)
	root.writeFile("usr/share/nginx/html/50x.html", "<html><body><h1>An error occurred.</h1></body></html>\n", 0o644)
	root.writeFile("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101:nginx user:/nonexistent:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", 0o644)
	root.writeFile("etc/group", "root:x:0:\nnginx:x:101:\nnogroup:x:65534:\n", 0o644)
	root.writeFile("etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n", 0o644)
	// nginx opens its compiled-in log paths before reading its configuration.
	root.symlink("/dev/stdout", "var/log/nginx/access.log")
	root.symlink("/dev/stderr", "var/log/nginx/error.log")
	root.mkdir("var/lib/nginx", 0o755)
	root.mkdir("run", 0o755)
	root.mkdir("tmp", 0o1777)
	if root.err != nil {
		return nil, root.err
	}
	return singleLayerImage(root.dir, v1.Config{
		Env:          []string{defaultEnv},
		Cmd:          []string{"nginx", "-g", "daemon off;"},
		ExposedPorts: map[string]struct{}{"80/tcp": {}},
		StopSignal:   "SIGQUIT",
	})
}

// sharedLibraries returns the program interpreter of binary and the
// libraries it loads, transitively, as ldd names them, resolved inside root
// (not on the build machine) and relative to it.
func sharedLibraries(root, binary string) (string, []string, error) {
	f, err := elf.Open(filepath.Join(root, binary))
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	var interp string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			data, err := io.ReadAll(p.Open())
			if err != nil {
				return "", nil, err
			}
			interp = strings.TrimPrefix(strings.TrimRight(string(data), "\x00"), "/")
		}
	}
	if interp == "" {
		return "", nil, fmt.Errorf("%s is not dynamically linked", binary)
	}
	searchDirs := []string{"lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "lib", "usr/lib"}
	if runtime.GOARCH == "arm64" {
		searchDirs = []string{"lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu", "lib", "usr/lib"}
	}
	found := map[string]string{}
	queue := []string{binary}
	var libs []string
	for len(queue) > 0 {
		next := queue[0]
		queue = queue[1:]
		obj, err := elf.Open(filepath.Join(root, next))
		if err != nil {
			return "", nil, err
		}
		sonames, err := obj.ImportedLibraries()
		obj.Close()
		if err != nil {
			return "", nil, fmt.Errorf("%s: %w", next, err)
		}
		for _, soname := range sonames {
			if _, ok := found[soname]; ok {
				continue
			}
			var lib string
			for _, d := range searchDirs {
				if _, err := os.Stat(filepath.Join(root, d, soname)); err == nil {
					lib = path.Join(d, soname)
					break
				}
			}
			if lib == "" {
				return "", nil, fmt.Errorf("%s needs %s, which no extracted package provides", next, soname)
			}
			found[soname] = lib
			libs = append(libs, lib)
			queue = append(queue, lib)
		}
	}
	sort.Strings(libs)
	return interp, libs, nil
}

// rootfs stages an image's files; the first error sticks, so that staging
// reads as a list of what the image contains.
type rootfs struct {
	dir string
	err error
}

func newRootfs(dir string) *rootfs {
	r := &rootfs{dir: dir}
	r.err = os.MkdirAll(dir, 0o755)
	return r
}

func (r *rootfs) mkdir(rel string, mode os.FileMode) {
	if r.err != nil {
		return
	}
	p := filepath.Join(r.dir, rel)
	if r.err = os.MkdirAll(p, 0o755); r.err == nil {
		// Chmod, unlike Mkdir, is not subject to the umask and keeps the sticky bit.
		r.err = os.Chmod(p, mode|modeBits(mode))
	}
}

func modeBits(mode os.FileMode) os.FileMode {
	if mode&0o1000 != 0 {
		return os.ModeSticky
	}
	return 0
}

func (r *rootfs) writeFile(rel, content string, mode os.FileMode) {
	if r.err != nil {
		return
	}
	p := filepath.Join(r.dir, rel)
	if r.err = os.MkdirAll(filepath.Dir(p), 0o755); r.err == nil {
		r.err = os.WriteFile(p, []byte(content), mode)
	}
}

// copyFile copies src, following symlinks, to rel in the root.
func (r *rootfs) copyFile(src, rel string, mode os.FileMode) {
	if r.err != nil {
		return
	}
	data, err := os.ReadFile(src)
	if err != nil {
		r.err = err
		return
	}
	r.writeFile(rel, string(data), mode)
}

func (r *rootfs) symlink(target, rel string) {
	if r.err != nil {
		return
	}
	p := filepath.Join(r.dir, rel)
	if r.err = os.MkdirAll(filepath.Dir(p), 0o755); r.err == nil {
		r.err = os.Symlink(target, p)
	}
}

// copyTree copies a directory of regular files, directories and symlinks.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(target, data, 0o644)
		}
	})
}

// singleLayerImage makes a one-layer image of the directory root, owned by root and
// with fixed timestamps, so that the same packages give the same image.
func singleLayerImage(root string, cfg v1.Config) (v1.Image, error) {
	layerTar, err := tarDirectory(root)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = runtime.GOARCH
	cf.OS = "linux"
	cf.Created = v1.Time{Time: buildTime}
	cf.Config = cfg
	cf.History = []v1.History{{Created: v1.Time{Time: buildTime}, CreatedBy: "hack/testimages from Debian packages"}}
	return mutate.ConfigFile(img, cf)
}

func tarDirectory(root string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		var link string
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "root", "root"
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = buildTime, time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(tw, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeImage writes a docker save tarball beside path and renames it into
// place, so that a reader never sees half a tarball.
func writeImage(path, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := tarball.MultiRefWriteToFile(tmp, map[name.Reference]v1.Image{tag: img}); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return errors.Join(err, os.Remove(tmp))
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
