// Package kubeletapi serves the kubelet's API on a node (port 10250): the
// API server proxies `kubectl exec`, `attach`, `port-forward` and `logs`
// here. Callers are authenticated by client certificates of the cluster CA
// and authorized by a SubjectAccessReview, as the kubelet does with
// --authorization-mode=Webhook. The stream framing (SPDY and WebSocket) is
// the kubelet's own streaming library.
package kubeletapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/klog/v2"
)

// Runtime is what the node does for these requests.
type Runtime interface {
	remotecommand.Executor
	remotecommand.Attacher
	portforward.PortForwarder
	// ContainerLog is the log file of a container (of its previous run if
	// asked) and whether the container still runs.
	ContainerLog(podUID types.UID, container string, previous bool) (path string, running func() bool, err error)
}

// Config is the server's.
type Config struct {
	NodeName string
	// ClientCAs verify callers' certificates.
	ClientCAs *x509.CertPool
	// Certificate is the server's own, asked for at every handshake: the
	// node renews it while it runs.
	Certificate func() *tls.Certificate
	// Client asks the API server whether a caller may do what it asks.
	Client kubernetes.Interface
	Pods   corelisters.PodLister
}

// Server is the kubelet API of one node.
type Server struct {
	cfg     Config
	runtime Runtime
	mux     *http.ServeMux
}

const (
	streamIdleTimeout     = 4 * time.Hour
	streamCreationTimeout = 30 * time.Second
)

// New returns the API's handler for rt.
func New(cfg Config, rt Runtime) *Server {
	s := &Server{cfg: cfg, runtime: rt, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	s.mux.HandleFunc("/exec/{namespace}/{pod}/{container}", s.authorized("proxy", s.exec))
	s.mux.HandleFunc("/attach/{namespace}/{pod}/{container}", s.authorized("proxy", s.attach))
	s.mux.HandleFunc("/portForward/{namespace}/{pod}", s.authorized("proxy", s.portForward))
	s.mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", s.authorized("proxy", s.containerLogs))
	return s
}

// ServeHTTP serves the API; the TLS listener has verified the caller.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// ListenAndServe serves on addr with TLS and client certificates until ctx
// ends.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 30 * time.Second,
		TLSConfig: &tls.Config{
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.cfg.Certificate(), nil },
			ClientCAs:      s.cfg.ClientCAs,
			// Anonymous requests get 401 from the handler, as the kubelet
			// with anonymous auth off.
			ClientAuth: tls.VerifyClientCertIfGiven,
			MinVersion: tls.VersionTLS12,
		},
	}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	err = srv.ServeTLS(ln, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// authorized checks who calls and whether the API server lets them, for
// the node's subresource, with the HTTP method's verb (the kubelet's
// mapping), then serves.
func (s *Server) authorized(subresource string, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		cert := r.TLS.VerifiedChains[0][0]
		verb := "get"
		switch r.Method {
		case http.MethodPost, http.MethodPut:
			verb = "create"
		case http.MethodDelete:
			verb = "delete"
		}
		review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   cert.Subject.CommonName,
			Groups: cert.Subject.Organization,
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: verb, Resource: "nodes", Subresource: subresource, Name: s.cfg.NodeName,
			},
		}}
		result, err := s.cfg.Client.AuthorizationV1().SubjectAccessReviews().Create(r.Context(), review, metav1.CreateOptions{})
		if err != nil {
			klog.ErrorS(err, "kubelet API: authorize", "user", cert.Subject.CommonName)
			http.Error(w, "authorization failed: "+err.Error(), http.StatusInternalServerError)
			return
		}
		if !result.Status.Allowed {
			http.Error(w, fmt.Sprintf("Forbidden (user=%s, verb=%s, resource=nodes, subresource=%s)", cert.Subject.CommonName, verb, subresource), http.StatusForbidden)
			return
		}
		next(w, r)
	}
}

// podUID finds the pod the path names on this node.
func (s *Server) podUID(w http.ResponseWriter, r *http.Request) (types.UID, bool) {
	ns, name := r.PathValue("namespace"), r.PathValue("pod")
	pod, err := s.cfg.Pods.Pods(ns).Get(name)
	if err != nil || pod.Spec.NodeName != s.cfg.NodeName {
		http.Error(w, fmt.Sprintf("pod %s/%s not found on node %s", ns, name, s.cfg.NodeName), http.StatusNotFound)
		return "", false
	}
	return pod.UID, true
}

func streamOptions(q url.Values) *remotecommand.Options {
	flag := func(name string) bool { v := q.Get(name); return v == "1" || v == "true" }
	return &remotecommand.Options{Stdin: flag("input"), Stdout: flag("output"), Stderr: flag("error"), TTY: flag("tty")}
}

func (s *Server) exec(w http.ResponseWriter, r *http.Request) {
	uid, ok := s.podUID(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	cmd := q["command"]
	if len(cmd) == 0 {
		http.Error(w, "exec: no command", http.StatusBadRequest)
		return
	}
	remotecommand.ServeExec(w, r, s.runtime, r.PathValue("pod"), string(uid), r.PathValue("container"), cmd,
		streamOptions(q), streamIdleTimeout, streamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

func (s *Server) attach(w http.ResponseWriter, r *http.Request) {
	uid, ok := s.podUID(w, r)
	if !ok {
		return
	}
	remotecommand.ServeAttach(w, r, s.runtime, r.PathValue("pod"), string(uid), r.PathValue("container"),
		streamOptions(r.URL.Query()), streamIdleTimeout, streamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

func (s *Server) portForward(w http.ResponseWriter, r *http.Request) {
	uid, ok := s.podUID(w, r)
	if !ok {
		return
	}
	opts, err := portforward.NewV4Options(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	portforward.ServePortForward(w, r, s.runtime, r.PathValue("pod"), string(uid), opts,
		streamIdleTimeout, streamCreationTimeout, portforward.SupportedProtocols)
}

func (s *Server) containerLogs(w http.ResponseWriter, r *http.Request) {
	uid, ok := s.podUID(w, r)
	if !ok {
		return
	}
	opts, previous, err := logOptions(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	path, running, err := s.runtime.ContainerLog(uid, r.PathValue("container"), previous)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	out := &flushWriter{w: w}
	if f, ok := w.(http.Flusher); ok {
		out.f = f
	}
	if err := WriteLogs(r.Context(), path, opts, running, out); err != nil {
		klog.ErrorS(err, "kubelet API: container logs", "path", path)
	}
}

type flushWriter struct {
	w io.Writer
	f http.Flusher
}

func (fw *flushWriter) Write(p []byte) (int, error) { return fw.w.Write(p) }
func (fw *flushWriter) Flush() {
	if fw.f != nil {
		fw.f.Flush()
	}
}

func logOptions(q url.Values) (LogOptions, bool, error) {
	var opts LogOptions
	boolean := func(name string) bool { v := q.Get(name); return v == "true" || v == "1" }
	opts.Follow, opts.Timestamps = boolean("follow"), boolean("timestamps")
	for _, p := range []struct {
		name string
		to   **int64
	}{{"tailLines", &opts.TailLines}, {"limitBytes", &opts.LimitBytes}} {
		if v := q.Get(p.name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return opts, false, fmt.Errorf("%s=%q: want a non-negative integer", p.name, v)
			}
			*p.to = &n
		}
	}
	if v := q.Get("sinceSeconds"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return opts, false, fmt.Errorf("sinceSeconds=%q: want a positive integer", v)
		}
		opts.Since = time.Now().Add(-time.Duration(n) * time.Second)
	}
	if v := q.Get("sinceTime"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return opts, false, fmt.Errorf("sinceTime=%q: %v", v, err)
		}
		opts.Since = t
	}
	return opts, boolean("previous"), nil
}
