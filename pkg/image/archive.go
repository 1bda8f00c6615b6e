package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// archive gives random access to the members of an uncompressed tar file
// without extracting it: docker save puts manifest.json last, and reading a
// layer must not mean reading the whole file again.
type archive struct {
	file    *os.File
	members map[string]archiveMember
}

type archiveMember struct {
	offset   int64
	size     int64
	typeflag byte
	linkname string
}

// openArchive indexes the tar file f. archive/tar skips file contents by
// seeking when it reads from an *os.File, so indexing costs one read of
// each header, and the file offset after Next is where that member's
// content starts.
func openArchive(f *os.File) (*archive, error) {
	a := &archive{file: f, members: map[string]archiveMember{}}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		offset, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, err
		}
		a.members[cleanMemberName(hdr.Name)] = archiveMember{
			offset:   offset,
			size:     hdr.Size,
			typeflag: hdr.Typeflag,
			linkname: hdr.Linkname,
		}
	}
	if len(a.members) == 0 {
		return nil, errors.New("empty tar archive")
	}
	return a, nil
}

func cleanMemberName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

func (a *archive) has(name string) bool {
	_, ok := a.members[cleanMemberName(name)]
	return ok
}

// open returns the content of member name, following the symlinks and hard
// links that old docker save archives use for layers shared by images.
func (a *archive) open(name string) (*io.SectionReader, error) {
	name = cleanMemberName(name)
	for hops := 0; hops < 16; hops++ {
		m, ok := a.members[name]
		if !ok {
			return nil, fmt.Errorf("%s is missing from the archive", name)
		}
		switch m.typeflag {
		case tar.TypeReg, tar.TypeRegA:
			return io.NewSectionReader(a.file, m.offset, m.size), nil
		case tar.TypeSymlink:
			if path.IsAbs(m.linkname) {
				name = cleanMemberName(m.linkname)
			} else {
				name = cleanMemberName(path.Join(path.Dir(name), m.linkname))
			}
		case tar.TypeLink:
			name = cleanMemberName(m.linkname)
		default:
			return nil, fmt.Errorf("%s in the archive is not a regular file", name)
		}
	}
	return nil, fmt.Errorf("%s: too many links in the archive", name)
}

// readAll reads a small member (a manifest or config) whole.
func (a *archive) readAll(name string) ([]byte, error) {
	r, err := a.open(name)
	if err != nil {
		return nil, err
	}
	if r.Size() > maxMetadataSize {
		return nil, fmt.Errorf("%s is %d bytes, too large for image metadata", name, r.Size())
	}
	return io.ReadAll(r)
}

// maxMetadataSize bounds manifests, indexes and configs read into memory.
const maxMetadataSize = 16 << 20
