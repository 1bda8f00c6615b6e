package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Whiteout names of the image spec, and what overlayfs wants for them.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
	// Other ".wh..wh." names are aufs bookkeeping with no meaning here.
	whiteoutMeta  = ".wh..wh."
	overlayOpaque = "trusted.overlay.opaque"
)

// applyLayer extracts the layer tar stream r into the empty directory root,
// turning whiteouts into what overlayfs reads from a lowerdir: an opaque
// directory gets the xattr trusted.overlay.opaque=y, and a deleted file
// becomes a 0:0 character device. It never writes outside root: entries
// that climb out or pass through a symlink of the layer are refused.
func applyLayer(ctx context.Context, root string, r io.Reader) error {
	x := &extractor{root: root, safeDirs: map[string]bool{"": true}}
	tr := tar.NewReader(r)
	for n := 0; ; n++ {
		if n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("layer tar: %w", err)
		}
		if err := x.apply(hdr, tr); err != nil {
			return fmt.Errorf("layer entry %s: %w", hdr.Name, err)
		}
	}
	// Directory times last, since creating their entries changed them.
	for i := len(x.dirTimes) - 1; i >= 0; i-- {
		d := x.dirTimes[i]
		if err := setTimes(d.path, d.mtime, false); err != nil {
			return err
		}
	}
	return nil
}

type extractor struct {
	root string
	// safeDirs are relative directories known to be real directories inside
	// root, so that their ancestors need not be checked again.
	safeDirs map[string]bool
	dirTimes []dirTime
}

type dirTime struct {
	path  string
	mtime time.Time
}

func (x *extractor) apply(hdr *tar.Header, content io.Reader) error {
	rel := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
	if rel == "" {
		// "./": the layer's root directory itself.
		if hdr.Typeflag == tar.TypeDir {
			return x.setMetadata(x.root, hdr)
		}
		return nil
	}
	dir, base := path.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	if err := x.ensureDir(dir); err != nil {
		return err
	}
	hostDir := filepath.Join(x.root, filepath.FromSlash(dir))

	if strings.HasPrefix(base, whiteoutPrefix) {
		switch {
		case base == whiteoutOpaque:
			return unix.Lsetxattr(hostDir, overlayOpaque, []byte("y"), 0)
		case strings.HasPrefix(base, whiteoutMeta):
			return nil
		default:
			target := filepath.Join(hostDir, strings.TrimPrefix(base, whiteoutPrefix))
			if err := x.clear(target, path.Join(dir, strings.TrimPrefix(base, whiteoutPrefix)), false); err != nil {
				return err
			}
			if err := unix.Mknod(target, unix.S_IFCHR, 0); err != nil {
				return fmt.Errorf("whiteout: %w", err)
			}
			return os.Lchown(target, 0, 0)
		}
	}

	target := filepath.Join(hostDir, base)
	if err := x.clear(target, rel, hdr.Typeflag == tar.TypeDir); err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := os.Mkdir(target, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		x.safeDirs[rel] = true
	case tar.TypeReg, tar.TypeRegA:
		f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, content)
		if closeErr := f.Close(); err == nil {
			err = closeErr
		}
		if err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := os.Symlink(hdr.Linkname, target); err != nil {
			return err
		}
	case tar.TypeLink:
		linkRel := strings.TrimPrefix(path.Clean("/"+hdr.Linkname), "/")
		linkDir, _ := path.Split(linkRel)
		if err := x.checkDir(strings.TrimSuffix(linkDir, "/")); err != nil {
			return fmt.Errorf("hard link to %s: %w", hdr.Linkname, err)
		}
		if err := os.Link(filepath.Join(x.root, filepath.FromSlash(linkRel)), target); err != nil {
			return err
		}
		// A hard link shares its target's inode and metadata.
		return nil
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := uint32(unix.S_IFIFO)
		switch hdr.Typeflag {
		case tar.TypeChar:
			mode = unix.S_IFCHR
		case tar.TypeBlock:
			mode = unix.S_IFBLK
		}
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknod(target, mode|uint32(hdr.Mode&0o7777), int(dev)); err != nil {
			return err
		}
	default:
		// Global headers and other extensions carry nothing to create.
		return nil
	}
	return x.setMetadata(target, hdr)
}

// clear makes room for a new entry at target: a later entry of a tar
// replaces an earlier one of the same name, except that a directory stays a
// directory when the new entry is one too.
func (x *extractor) clear(target, rel string, keepDir bool) error {
	info, err := os.Lstat(target)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if keepDir && info.IsDir() {
		return nil
	}
	for d := range x.safeDirs {
		if d == rel || strings.HasPrefix(d, rel+"/") {
			delete(x.safeDirs, d)
		}
	}
	return os.RemoveAll(target)
}

// ensureDir makes sure the relative directory dir exists inside root as a
// real directory, creating missing ones as tar implies them, and refuses a
// path through a symlink.
func (x *extractor) ensureDir(dir string) error {
	if x.safeDirs[dir] {
		return nil
	}
	parent, _ := path.Split(dir)
	if err := x.ensureDir(strings.TrimSuffix(parent, "/")); err != nil {
		return err
	}
	hostDir := filepath.Join(x.root, filepath.FromSlash(dir))
	info, err := os.Lstat(hostDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Mkdir(hostDir, 0o755); err != nil {
			return err
		}
	case err != nil:
		return err
	case !info.IsDir():
		return fmt.Errorf("%s is not a directory in this layer (a symlink may not be followed)", dir)
	}
	x.safeDirs[dir] = true
	return nil
}

// checkDir is ensureDir for a path that must already exist.
func (x *extractor) checkDir(dir string) error {
	if x.safeDirs[dir] {
		return nil
	}
	return fmt.Errorf("%s is not a directory of this layer", dir)
}

func (x *extractor) setMetadata(target string, hdr *tar.Header) error {
	if err := os.Lchown(target, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	for key, value := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(key, "SCHILY.xattr.")
		if !ok || !allowedXattr(name) {
			continue
		}
		if err := unix.Lsetxattr(target, name, []byte(value), 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
			return fmt.Errorf("xattr %s: %w", name, err)
		}
	}
	isLink := hdr.Typeflag == tar.TypeSymlink
	if !isLink {
		// After chown, which clears the setuid and setgid bits.
		if err := unix.Fchmodat(unix.AT_FDCWD, target, uint32(hdr.Mode&0o7777), 0); err != nil {
			return err
		}
	}
	if hdr.Typeflag == tar.TypeDir {
		x.dirTimes = append(x.dirTimes, dirTime{path: target, mtime: hdr.ModTime})
		return nil
	}
	return setTimes(target, hdr.ModTime, isLink)
}

// allowedXattr keeps file capabilities and user attributes, but never lets
// an image set trusted.* (overlayfs reads those) or system.* attributes.
func allowedXattr(name string) bool {
	return strings.HasPrefix(name, "user.") || strings.HasPrefix(name, "security.")
}

func setTimes(target string, mtime time.Time, noFollow bool) error {
	if mtime.IsZero() {
		mtime = time.Unix(0, 0)
	}
	ts := unix.NsecToTimespec(mtime.UnixNano())
	flags := 0
	if noFollow {
		flags = unix.AT_SYMLINK_NOFOLLOW
	}
	return unix.UtimesNanoAt(unix.AT_FDCWD, target, []unix.Timespec{ts, ts}, flags)
}
