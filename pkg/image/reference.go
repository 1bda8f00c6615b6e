package image

import (
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
)

// dockerHub is how docker and Kubernetes spell Docker Hub in normalised
// references; go-containerregistry calls it index.docker.io.
const dockerHub = "docker.io"

// Resolve normalises an image reference the way docker and the kubelet do:
// busybox:1.28.4 becomes docker.io/library/busybox:1.28.4, a missing tag
// becomes :latest, and a reference with a digest keeps only the digest.
func Resolve(ref string) (string, error) {
	r, err := parseReference(ref)
	if err != nil {
		return "", err
	}
	return canonical(r), nil
}

func parseReference(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("invalid image reference %q: %w", ref, err)
	}
	return r, nil
}

func canonical(r name.Reference) string {
	repo := repositoryName(r.Context())
	if d, ok := r.(name.Digest); ok {
		return repo + "@" + d.DigestStr()
	}
	return repo + ":" + r.Identifier()
}

// repositoryName is registry/repository with Docker Hub spelt docker.io.
func repositoryName(repo name.Repository) string {
	registry := repo.RegistryStr()
	if registry == name.DefaultRegistry {
		registry = dockerHub
	}
	return registry + "/" + repo.RepositoryStr()
}

// SplitRef splits a normalised reference into repository and tag, or
// repository and "<none>" when it names a digest: the columns crictl prints.
func SplitRef(ref string) (repository, tag string) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return ref, "<none>"
	}
	if _, ok := r.(name.Digest); ok {
		return repositoryName(r.Context()), "<none>"
	}
	return repositoryName(r.Context()), r.Identifier()
}
