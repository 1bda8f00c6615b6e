package image

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// PullPolicy says when Pull contacts the registry; the values are those of
// a container's imagePullPolicy.
type PullPolicy string

const (
	PullAlways       PullPolicy = "Always"
	PullIfNotPresent PullPolicy = "IfNotPresent"
	PullNever        PullPolicy = "Never"
)

// ErrNeverPull is returned (wrapped) by Pull with PullNever for an image the
// store does not have.
var ErrNeverPull = errors.New("image is not present and the pull policy is Never")

// Credentials authenticate to one registry, as one entry of an
// imagePullSecret's docker config does.
type Credentials struct {
	// Registry is the host[:port] they are for. docker.io, index.docker.io,
	// registry-1.docker.io and https://index.docker.io/v1/ all mean Docker Hub.
	Registry string
	Username string
	Password string
}

// dockerHubAPI is the host that serves Docker Hub's registry API.
const dockerHubAPI = "registry-1.docker.io"

// Accept header for manifests: every kind this store can read.
var manifestMediaTypes = []string{
	string(types.OCIManifestSchema1),
	string(types.OCIImageIndex),
	string(types.DockerManifestSchema2),
	string(types.DockerManifestList),
}

type httpDoer interface {
	Do(*http.Request) (*http.Response, error)
}

func newHTTPClient() *http.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.ResponseHeaderTimeout = time.Minute
	return &http.Client{Transport: transport}
}

// Pull makes sure the store has ref, fetching it from its registry as policy
// says. An empty policy means the Kubernetes default: Always for :latest,
// IfNotPresent otherwise. creds are tried in turn for a registry that
// refuses anonymous access; only those whose Registry matches are sent.
func (s *Store) Pull(ctx context.Context, ref string, creds []Credentials, policy PullPolicy) (Image, error) {
	r, err := parseReference(ref)
	if err != nil {
		return Image{}, err
	}
	normalised := canonical(r)
	if policy == "" {
		policy = PullIfNotPresent
		if t, ok := r.(name.Tag); ok && t.TagStr() == "latest" {
			policy = PullAlways
		}
	}
	switch policy {
	case PullNever, PullIfNotPresent:
		img, err := s.Get(normalised)
		if err == nil {
			return img, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return Image{}, err
		}
		if policy == PullNever {
			return Image{}, fmt.Errorf("%s: %w", normalised, ErrNeverPull)
		}
	case PullAlways:
	default:
		return Image{}, fmt.Errorf("unknown pull policy %q", policy)
	}
	lock, err := s.lockShared()
	if err != nil {
		return Image{}, err
	}
	defer lock.release()
	img, err := s.pull(ctx, r, normalised, creds)
	if err != nil {
		return Image{}, fmt.Errorf("pull %s: %w", normalised, err)
	}
	return img, nil
}

// endpoint is one place to pull a repository from.
type endpoint struct {
	base   string // scheme://host
	host   string // what credentials are matched against
	mirror bool
}

func (s *Store) endpoints(repo name.Repository) ([]endpoint, error) {
	registry := repo.RegistryStr()
	var eps []endpoint
	if registry == name.DefaultRegistry {
		if s.registryMirror != "" {
			base := s.registryMirror
			if !strings.Contains(base, "://") {
				base = s.scheme(base) + "://" + base
			}
			u, err := url.Parse(base)
			if err != nil {
				return nil, fmt.Errorf("registry mirror %q: %w", s.registryMirror, err)
			}
			eps = append(eps, endpoint{base: strings.TrimSuffix(base, "/"), host: u.Host, mirror: true})
		}
		return append(eps, endpoint{base: "https://" + dockerHubAPI, host: dockerHub}), nil
	}
	return []endpoint{{base: s.scheme(registry) + "://" + registry, host: registry}}, nil
}

// scheme is http for loopback registries and those configured insecure.
func (s *Store) scheme(host string) string {
	if s.insecureRegistries[host] || isLoopback(host) {
		return "http"
	}
	return "https"
}

func isLoopback(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (s *Store) pull(ctx context.Context, r name.Reference, normalised string, creds []Credentials) (Image, error) {
	eps, err := s.endpoints(r.Context())
	if err != nil {
		return Image{}, err
	}
	var errs []error
	for _, ep := range eps {
		img, err := s.pullWithCredentials(ctx, ep, r, normalised, creds)
		if err == nil {
			return img, nil
		}
		if ctx.Err() != nil {
			return Image{}, err
		}
		if ep.mirror {
			err = fmt.Errorf("mirror %s: %w", ep.base, err)
		}
		errs = append(errs, err)
	}
	return Image{}, errors.Join(errs...)
}

// pullWithCredentials tries each matching credential in turn, as the
// kubelet does with imagePullSecrets, or pulls anonymously if none matches.
func (s *Store) pullWithCredentials(ctx context.Context, ep endpoint, r name.Reference, normalised string, creds []Credentials) (Image, error) {
	var matching []*Credentials
	for i := range creds {
		if sameRegistry(creds[i].Registry, ep.host) {
			matching = append(matching, &creds[i])
		}
	}
	if len(matching) == 0 {
		matching = []*Credentials{nil}
	}
	var err error
	for _, c := range matching {
		client := &registryClient{http: s.client, base: ep.base, repo: r.Context().RepositoryStr(), creds: c}
		var img Image
		img, err = s.pullFrom(ctx, client, r, normalised)
		var regErr *registryError
		if err == nil || !errors.As(err, &regErr) || !regErr.unauthorized() {
			return img, err
		}
	}
	return Image{}, err
}

func sameRegistry(a, b string) bool {
	return normaliseRegistry(a) == normaliseRegistry(b)
}

func normaliseRegistry(host string) string {
	host = strings.ToLower(host)
	if i := strings.Index(host, "://"); i >= 0 {
		host = host[i+3:]
	}
	host, _, _ = strings.Cut(host, "/")
	switch host {
	case "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return dockerHub
	}
	return host
}

func (s *Store) pullFrom(ctx context.Context, c *registryClient, r name.Reference, normalised string) (Image, error) {
	raw, mediaType, digest, err := c.manifest(ctx, r.Identifier())
	if err != nil {
		return Image{}, err
	}
	if d, ok := r.(name.Digest); ok && digest.String() != d.DigestStr() {
		return Image{}, fmt.Errorf("registry served manifest %s for digest %s", digest, d.DigestStr())
	}
	m, err := imageManifest(mediaType, raw, func(desc v1.Descriptor) ([]byte, error) {
		child, _, childDigest, err := c.manifest(ctx, desc.Digest.String())
		if err != nil {
			return nil, err
		}
		if childDigest != desc.Digest {
			return nil, fmt.Errorf("registry served manifest %s for digest %s", childDigest, desc.Digest)
		}
		return child, nil
	})
	if err != nil {
		return Image{}, err
	}
	config, err := c.smallBlob(ctx, m.Config.Digest)
	if err != nil {
		return Image{}, fmt.Errorf("config: %w", err)
	}
	p := pendingImage{
		refs:       []string{normalised},
		config:     config,
		repoDigest: repositoryName(r.Context()) + "@" + digest.String(),
	}
	for _, l := range m.Layers {
		if !l.MediaType.IsDistributable() {
			return Image{}, fmt.Errorf("layer %s is non-distributable (%s) and cannot be pulled", l.Digest, l.MediaType)
		}
		p.layers = append(p.layers, pendingLayer{
			digest: l.Digest,
			open: func(ctx context.Context) (io.ReadCloser, error) {
				return c.blob(ctx, l.Digest)
			},
		})
	}
	return s.commit(ctx, p)
}

// registryClient speaks the read side of the OCI distribution API to one
// registry endpoint, with Basic or Bearer (token) authentication.
type registryClient struct {
	http          httpDoer
	base          string
	repo          string
	creds         *Credentials
	authorization string
}

// registryError is a registry's refusal, with its own words for why.
type registryError struct {
	url    string
	status int
	reason string
}

func (e *registryError) Error() string {
	msg := fmt.Sprintf("%s answered %d %s", e.url, e.status, http.StatusText(e.status))
	if e.reason != "" {
		msg += ": " + e.reason
	}
	return msg
}

func (e *registryError) unauthorized() bool {
	return e.status == http.StatusUnauthorized || e.status == http.StatusForbidden
}

// responseError reads the registry's error document (or the start of
// whatever else it sent) and closes the body.
func responseError(resp *http.Response) error {
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var doc struct {
		Errors []struct {
			Code    string          `json:"code"`
			Message string          `json:"message"`
			Detail  json.RawMessage `json:"detail"`
		} `json:"errors"`
		Details string `json:"details"`
	}
	var reasons []string
	if json.Unmarshal(body, &doc) == nil {
		for _, e := range doc.Errors {
			reason := e.Code
			if e.Message != "" {
				reason += ": " + e.Message
			}
			reasons = append(reasons, reason)
		}
		if doc.Details != "" {
			reasons = append(reasons, doc.Details)
		}
	}
	if len(reasons) == 0 {
		text := strings.TrimSpace(string(body))
		if len(text) > 300 {
			text = text[:300] + "..."
		}
		if text != "" {
			reasons = append(reasons, text)
		}
	}
	u := resp.Request.URL
	return &registryError{url: u.Scheme + "://" + u.Host + u.Path, status: resp.StatusCode, reason: strings.Join(reasons, "; ")}
}

// get sends a GET, authenticating once if the registry asks to.
func (c *registryClient) get(ctx context.Context, path string, accept []string) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
		if err != nil {
			return nil, err
		}
		for _, a := range accept {
			req.Header.Add("Accept", a)
		}
		if c.authorization != "" {
			req.Header.Set("Authorization", c.authorization)
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode == http.StatusOK {
			return resp, nil
		}
		challenge := resp.Header.Get("WWW-Authenticate")
		if resp.StatusCode != http.StatusUnauthorized || attempt > 0 || challenge == "" {
			return nil, responseError(resp)
		}
		refusal := responseError(resp)
		if err := c.authenticate(ctx, challenge, refusal); err != nil {
			return nil, err
		}
	}
}

func (c *registryClient) authenticate(ctx context.Context, challenge string, refusal error) error {
	scheme, params := parseChallenge(challenge)
	switch scheme {
	case "basic":
		if c.creds == nil {
			return fmt.Errorf("registry requires credentials: %w", refusal)
		}
		c.authorization = "Basic " + base64.StdEncoding.EncodeToString([]byte(c.creds.Username+":"+c.creds.Password))
		return nil
	case "bearer":
		token, err := c.token(ctx, params)
		if err != nil {
			return err
		}
		c.authorization = "Bearer " + token
		return nil
	default:
		return fmt.Errorf("unsupported authentication scheme %q: %w", scheme, refusal)
	}
}

// token fetches a bearer token from the realm the registry named, as the
// docker token authentication specification describes.
func (c *registryClient) token(ctx context.Context, params map[string]string) (string, error) {
	realm, err := url.Parse(params["realm"])
	if err != nil || realm.Host == "" {
		return "", fmt.Errorf("registry sent a bearer challenge without a usable realm %q", params["realm"])
	}
	q := realm.Query()
	if service := params["service"]; service != "" {
		q.Set("service", service)
	}
	scope := params["scope"]
	if scope == "" {
		scope = "repository:" + c.repo + ":pull"
	}
	q.Set("scope", scope)
	realm.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, realm.String(), nil)
	if err != nil {
		return "", err
	}
	if c.creds != nil {
		req.SetBasicAuth(c.creds.Username, c.creds.Password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("token: %w", responseError(resp))
	}
	defer resp.Body.Close()
	var body struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return "", fmt.Errorf("token from %s: %w", realm.Host, err)
	}
	if body.Token == "" {
		body.Token = body.AccessToken
	}
	if body.Token == "" {
		return "", fmt.Errorf("token server %s sent no token", realm.Host)
	}
	return body.Token, nil
}

// parseChallenge splits a WWW-Authenticate value such as
// `Bearer realm="https://auth.docker.io/token",service="registry.docker.io"`.
func parseChallenge(challenge string) (string, map[string]string) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(challenge), " ")
	params := map[string]string{}
	for rest = strings.TrimSpace(rest); rest != ""; {
		key, after, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		key = strings.ToLower(strings.TrimSpace(key))
		var value string
		if strings.HasPrefix(after, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(after) && after[i] != '"'; i++ {
				if after[i] == '\\' && i+1 < len(after) {
					i++
				}
				b.WriteByte(after[i])
			}
			value = b.String()
			rest = after[min(i+1, len(after)):]
		} else {
			value, rest, _ = strings.Cut(after, ",")
			rest = "," + rest
		}
		params[key] = value
		rest = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ","))
	}
	return strings.ToLower(scheme), params
}

// manifest fetches a manifest or index by tag or digest and returns it with
// its media type and digest.
func (c *registryClient) manifest(ctx context.Context, reference string) ([]byte, types.MediaType, v1.Hash, error) {
	resp, err := c.get(ctx, "/v2/"+c.repo+"/manifests/"+reference, manifestMediaTypes)
	if err != nil {
		return nil, "", v1.Hash{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataSize))
	if err != nil {
		return nil, "", v1.Hash{}, err
	}
	digest, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return nil, "", v1.Hash{}, err
	}
	mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	mt := types.MediaType(mediaType)
	if !mt.IsIndex() && !mt.IsImage() && !mt.IsSchema1() {
		mt = ""
	}
	return raw, mt, digest, nil
}

func (c *registryClient) blob(ctx context.Context, digest v1.Hash) (io.ReadCloser, error) {
	resp, err := c.get(ctx, "/v2/"+c.repo+"/blobs/"+digest.String(), nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

func (c *registryClient) smallBlob(ctx context.Context, digest v1.Hash) ([]byte, error) {
	rc, err := c.blob(ctx, digest)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxMetadataSize))
	if err != nil {
		return nil, err
	}
	if err := verifyDigest(data, digest); err != nil {
		return nil, err
	}
	return data, nil
}
