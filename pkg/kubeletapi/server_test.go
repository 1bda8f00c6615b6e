package kubeletapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
	clientremotecommand "k8s.io/client-go/tools/remotecommand"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"

	"github.com/steadhq/stead/pkg/pki"
)

// fakeRuntime runs "commands" in-process: echo prints its arguments, exit
// ends with the code given.
type fakeRuntime struct{ log string }

func (f *fakeRuntime) ExecInContainer(_ context.Context, name, uid, container string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, _ <-chan remotecommand.TerminalSize, _ time.Duration) error {
	switch cmd[0] {
	case "echo":
		fmt.Fprintf(out, "%s in %s/%s(%s)\n", strings.Join(cmd[1:], " "), name, container, uid)
		return nil
	case "cat":
		_, err := io.Copy(out, in)
		return err
	}
	return fmt.Errorf("no such command %q", cmd[0])
}

func (f *fakeRuntime) AttachContainer(context.Context, string, string, string, io.Reader, io.WriteCloser, io.WriteCloser, bool, <-chan remotecommand.TerminalSize) error {
	return fmt.Errorf("attach not used here")
}

func (f *fakeRuntime) PortForward(context.Context, string, string, int32, io.ReadWriteCloser) error {
	return fmt.Errorf("port-forward not used here")
}

func (f *fakeRuntime) ContainerLog(uid types.UID, container string, previous bool) (string, func() bool, error) {
	return f.log, func() bool { return false }, nil
}

type fixture struct {
	url             string
	ca              *pki.CA
	allowed, denied *creds
}

type creds struct {
	cert            tls.Certificate
	certPEM, keyPEM []byte
}

func issue(t *testing.T, ca *pki.CA, spec pki.Spec) *creds {
	der, key, err := ca.Issue(spec, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := pki.EncodeCertKey(der, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &creds{cert: cert, certPEM: certPEM, keyPEM: keyPEM}
}

func newFixture(t *testing.T) *fixture {
	ca, err := pki.LoadOrCreateCA(t.TempDir(), "ca", "test-ca")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{
		ca:      ca,
		allowed: issue(t, ca, pki.Spec{CommonName: "kube-apiserver-kubelet-client", Client: true}),
		denied:  issue(t, ca, pki.Spec{CommonName: "mallory", Client: true}),
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-0", UID: "uid-web-0"}, Spec: corev1.PodSpec{NodeName: "node-a"}}
	client := fake.NewClientset(pod)
	// The API server's answer: only the API server's own client may.
	client.PrependReactor("create", "subjectaccessreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		review := action.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview)
		attrs := review.Spec.ResourceAttributes
		review.Status.Allowed = review.Spec.User == "kube-apiserver-kubelet-client" && attrs.Resource == "nodes" && attrs.Subresource == "proxy" && attrs.Name == "node-a"
		return true, review, nil
	})
	factory := informers.NewSharedInformerFactory(client, 0)
	pods := factory.Core().V1().Pods()
	_ = pods.Informer().GetIndexer().Add(pod)

	log := writeLog(t, sampleLog)
	srv := New(Config{NodeName: "node-a", Client: client, Pods: pods.Lister()}, &fakeRuntime{log: log})
	ts := httptest.NewUnstartedServer(srv)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	ts.TLS = &tls.Config{ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven, Certificates: []tls.Certificate{issue(t, ca, pki.Spec{CommonName: "node-a", DNSNames: []string{"localhost"}, Server: true}).cert}}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	f.url = ts.URL
	return f
}

func (f *fixture) restConfig(c *creds) *rest.Config {
	cfg := &rest.Config{Host: f.url, TLSClientConfig: rest.TLSClientConfig{CAData: f.ca.CertPEM(), ServerName: "localhost"}}
	if c != nil {
		cfg.TLSClientConfig.CertData, cfg.TLSClientConfig.KeyData = c.certPEM, c.keyPEM
	}
	return cfg
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestExecOverSPDY(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name    string
		creds   *creds
		cmd     []string
		stdin   string
		want    string
		wantErr string
	}{
		{"the API server's client runs a command", f.allowed, []string{"echo", "hello"}, "", "hello in web-0/nginx(uid-web-0)\n", ""},
		{"stdin reaches the command", f.allowed, []string{"cat"}, "typed\n", "typed\n", ""},
		{"another client is forbidden", f.denied, []string{"echo", "x"}, "", "", "Forbidden"},
		{"no client certificate is unauthorized", nil, []string{"echo", "x"}, "", "", "Unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := "output=1&error=1"
			for _, c := range tc.cmd {
				q += "&command=" + c
			}
			if tc.stdin != "" {
				q += "&input=1"
			}
			exec, err := clientremotecommand.NewSPDYExecutor(f.restConfig(tc.creds), "POST", mustURL(t, f.url+"/exec/default/web-0/nginx?"+q))
			if err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			opts := clientremotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr}
			if tc.stdin != "" {
				opts.Stdin = strings.NewReader(tc.stdin)
			}
			err = exec.StreamWithContext(context.Background(), opts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || stdout.String() != tc.want {
				t.Fatalf("stdout %q (err %v, stderr %q), want %q", stdout.String(), err, stderr.String(), tc.want)
			}
		})
	}
}

func TestContainerLogsEndpoint(t *testing.T) {
	f := newFixture(t)
	pool := x509.NewCertPool()
	pool.AddCert(f.ca.Cert)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost", Certificates: []tls.Certificate{f.allowed.cert}}}}
	for _, tc := range []struct {
		path   string
		status int
		body   string
	}{
		{"/containerLogs/default/web-0/nginx?tailLines=1", 200, "four\n"},
		{"/containerLogs/default/web-0/nginx?tailLines=-1", 400, "tailLines"},
		{"/containerLogs/default/nobody/nginx", 404, "not found"},
	} {
		resp, err := client.Get(f.url + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.body) {
			t.Errorf("%s: %d %q, want %d containing %q", tc.path, resp.StatusCode, body, tc.status, tc.body)
		}
	}
}
