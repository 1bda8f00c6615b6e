package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// Config configures a Server. The zero value serves cluster.local with a
// 5 second TTL and forwards nothing.
type Config struct {
	// Zone is the cluster domain, "cluster.local" if empty.
	Zone string
	// TTL is the TTL of every record served from the cluster's data, in
	// seconds; 5 if zero.
	TTL uint32
	// Upstreams are the resolvers that names outside the zone are
	// forwarded to, as "ip" or "ip:port", tried in order. See
	// ResolvConfUpstreams.
	Upstreams []string
}

const (
	defaultZone = "cluster.local"
	defaultTTL  = 5
	// advertisedUDPSize is the EDNS0 buffer size this server announces,
	// the DNS Flag Day 2020 value that avoids IP fragmentation.
	advertisedUDPSize = 1232
	forwardTimeout    = 2 * time.Second
)

// Server answers DNS queries for the cluster zone from an in-memory index
// kept current by informers, and forwards all other names.
type Server struct {
	zone      string // "cluster.local."
	dotZone   string // ".cluster.local."
	ttl       uint32
	upstreams []netip.AddrPort

	ctrl   *controller
	idx    *index
	synced []cache.InformerSynced

	udpClient, tcpClient *dns.Client

	listenMu sync.RWMutex
	listen   []netip.AddrPort // our own listeners, never forwarded to

	rotation atomic.Uint32
	replies  sync.Pool
	// allSynced latches HasSynced, which the fast path asks per query.
	allSynced atomic.Bool
}

var _ dns.Handler = (*Server)(nil)

// New creates a Server fed by the Service, EndpointSlice and Namespace
// informers of factory. It registers those informers with the factory; the
// caller starts the factory afterwards and may wait for HasSynced.
func New(cfg Config, factory informers.SharedInformerFactory) (*Server, error) {
	zone := strings.ToLower(strings.Trim(cfg.Zone, "."))
	if zone == "" {
		zone = defaultZone
	}
	if _, ok := dns.IsDomainName(zone); !ok {
		return nil, fmt.Errorf("dns: invalid zone %q", cfg.Zone)
	}
	zone = dns.Fqdn(zone)
	ttl := cfg.TTL
	if ttl == 0 {
		ttl = defaultTTL
	}
	upstreams := make([]netip.AddrPort, 0, len(cfg.Upstreams))
	for _, u := range cfg.Upstreams {
		ap, err := parseUpstream(u)
		if err != nil {
			return nil, err
		}
		upstreams = append(upstreams, ap)
	}

	s := &Server{
		zone:      zone,
		dotZone:   "." + zone,
		ttl:       ttl,
		upstreams: upstreams,
		ctrl:      newController(builder{zone: zone, ttl: ttl}),
		udpClient: &dns.Client{Net: "udp", Timeout: forwardTimeout, UDPSize: dns.DefaultMsgSize},
		tcpClient: &dns.Client{Net: "tcp", Timeout: forwardTimeout},
	}
	s.idx = s.ctrl.idx
	s.replies.New = func() any { return new(reply) }

	onService, onSlice, onNamespace := s.ctrl.handlers()
	for _, reg := range []struct {
		informer cache.SharedIndexInformer
		handler  cache.ResourceEventHandler
	}{
		{factory.Core().V1().Services().Informer(), onService},
		{factory.Discovery().V1().EndpointSlices().Informer(), onSlice},
		{factory.Core().V1().Namespaces().Informer(), onNamespace},
	} {
		registration, err := reg.informer.AddEventHandler(reg.handler)
		if err != nil {
			return nil, fmt.Errorf("dns: add event handler: %w", err)
		}
		s.synced = append(s.synced, registration.HasSynced)
	}
	return s, nil
}

// parseUpstream accepts "ip", "ip:port" and "[ipv6]:port".
func parseUpstream(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	ip, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("dns: upstream %q is not an IP address or IP:port", s)
	}
	return netip.AddrPortFrom(ip.Unmap(), 53), nil
}

// HasSynced reports whether the informers have listed every object and the
// index holds them. Until then queries for the zone get SERVFAIL, which
// makes clients retry, rather than a false NXDOMAIN that they would cache.
func (s *Server) HasSynced() bool {
	for _, synced := range s.synced {
		if !synced() {
			return false
		}
	}
	return true
}

func (s *Server) indexReady() bool {
	if s.allSynced.Load() {
		return true
	}
	if s.HasSynced() {
		s.allSynced.Store(true)
		return true
	}
	return false
}

// ListenAndServe serves DNS over UDP and TCP on addr (host:port; port 0
// picks one port for both) until ctx is done.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	ln, pcs, err := Listen(addr)
	if err != nil {
		return err
	}
	return s.Serve(ctx, ln, pcs...)
}

// Listen binds addr for TCP and, for UDP, one socket per CPU on the same
// port (SO_REUSEPORT): the kernel spreads queries over them, so that
// reading packets is not one goroutine's work. Port 0 picks one port.
func Listen(addr string) (net.Listener, []net.PacketConn, error) {
	reuse := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	first, err := reuse.ListenPacket(context.Background(), "udp", addr)
	if err != nil {
		return nil, nil, err
	}
	pcs := []net.PacketConn{first}
	closeAll := func() {
		for _, pc := range pcs {
			pc.Close()
		}
	}
	bound := first.LocalAddr().String()
	for range runtime.GOMAXPROCS(0) - 1 {
		pc, err := reuse.ListenPacket(context.Background(), "udp", bound)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		pcs = append(pcs, pc)
	}
	ln, err := net.Listen("tcp", bound)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return ln, pcs, nil
}

// Serve serves DNS on the given TCP and UDP sockets until ctx is done, and
// closes them.
func (s *Server) Serve(ctx context.Context, ln net.Listener, pcs ...net.PacketConn) error {
	servers := []*dns.Server{{Listener: ln, Handler: s}}
	var batchServers []func() error
	s.addListenAddrs(ln.Addr())
	for _, pc := range pcs {
		s.addListenAddrs(pc.LocalAddr())
		if serve := s.batchServer(pc); serve != nil {
			batchServers = append(batchServers, serve)
			continue
		}
		// UDPSize is the read buffer for queries, which EDNS0 lets reach
		// the client's advertised size.
		servers = append(servers, &dns.Server{PacketConn: pc, Handler: s, UDPSize: dns.DefaultMsgSize})
	}
	started := make(chan struct{}, len(servers))
	errc := make(chan error, len(servers)+len(batchServers))
	for _, srv := range servers {
		srv.NotifyStartedFunc = func() { started <- struct{}{} }
		go func() { errc <- srv.ActivateAndServe() }()
	}
	var batches sync.WaitGroup
	for _, serve := range batchServers {
		batches.Go(func() { errc <- serve() })
	}

	// Shutting a miekg server down before it started fails, so wait for
	// all (or a failure) before watching ctx.
	var err error
	for range servers {
		select {
		case <-started:
		case err = <-errc:
		}
		if err != nil {
			break
		}
	}
	if err == nil {
		select {
		case <-ctx.Done():
		case err = <-errc:
		}
	}

	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range servers {
		_ = srv.ShutdownContext(shutdownCtx)
	}
	for _, pc := range pcs {
		pc.Close()
	}
	ln.Close()
	batches.Wait() // they end when their socket is closed
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (s *Server) addListenAddrs(addrs ...net.Addr) {
	s.listenMu.Lock()
	defer s.listenMu.Unlock()
	for _, a := range addrs {
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			s.listen = append(s.listen, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		}
	}
}

// ServeDNS answers one query; it implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	if r.Response || r.Opcode != dns.OpcodeQuery || len(r.Question) != 1 {
		rcode := dns.RcodeFormatError
		if r.Opcode != dns.OpcodeQuery {
			rcode = dns.RcodeNotImplemented
		}
		rep := s.newReply(r)
		rep.msg.Rcode = rcode
		s.send(w, r, rep)
		return
	}
	// ToLower returns its argument, without allocating, when it is
	// already lower case, as nearly every query is.
	name := strings.ToLower(r.Question[0].Name)
	rep, chase := s.localReply(r, name, s.rotation.Add(1))
	switch {
	case rep == nil:
		s.forward(w, r)
	case chase != nil:
		s.chaseCNAME(rep, r, chase)
		s.send(w, r, rep)
	default:
		s.send(w, r, rep)
	}
}

// localReply builds the reply to r, whose question names name in lower
// case, from the index alone. It returns no reply for a name that is not
// the cluster's, to be forwarded; and a CNAME with the reply when that
// holds an ExternalName Service's CNAME whose target only the upstreams
// know. rotation picks which of several addresses leads.
func (s *Server) localReply(r *dns.Msg, name string, rotation uint32) (*reply, *dns.CNAME) {
	q := &r.Question[0]
	if s.inZone(name) {
		return s.zoneReply(r, name, rotation)
	}
	if n := s.idx.lookupPTR(name); n != nil {
		rep := s.newReply(r)
		rep.msg.Authoritative = true
		rep.setAnswer(n.records(q.Qtype), q, name, rotation)
		return rep, nil
	}
	return nil, nil
}

func (s *Server) inZone(name string) bool {
	return name == s.zone || strings.HasSuffix(name, s.dotZone)
}

func (s *Server) zoneReply(r *dns.Msg, name string, rotation uint32) (*reply, *dns.CNAME) {
	q := &r.Question[0]
	rep := s.newReply(r)
	if !s.HasSynced() {
		rep.msg.Rcode = dns.RcodeServerFailure
		return rep, nil
	}
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		rep.msg.Rcode = dns.RcodeRefused
		return rep, nil
	}

	n, soa := s.idx.lookup(name)
	if n == nil {
		n = s.podNode(name)
	}
	rep.msg.Authoritative = true
	if n == nil {
		rep.msg.Rcode = dns.RcodeNameError
		rep.msg.Ns = soa
		return rep, nil
	}

	answer := n.records(q.Qtype)
	if len(answer) == 0 && len(n.cname) > 0 {
		return rep, s.cnameReply(rep, q, n.cname[:1:1], soa)
	}
	if len(answer) == 0 {
		rep.msg.Ns = soa // NODATA: the name exists, with other types
		return rep, nil
	}
	rep.setAnswer(answer, q, name, rotation)
	if q.Qtype == dns.TypeSRV {
		rep.msg.Extra = n.extra
	}
	return rep, nil
}

// podNode answers <a-b-c-d>.<ns>.pod.<zone> for any address, provided the
// namespace exists: CoreDNS's "pods insecure", which is what pods that
// resolve their own dashed name rely on. It allocates, unlike the prebuilt
// names, but is rarely asked.
func (s *Server) podNode(name string) *node {
	label, rest, ok := strings.Cut(name, ".")
	if !ok || strings.Count(rest, ".") != strings.Count(s.zone, ".")+2 ||
		!strings.HasSuffix(rest, ".pod"+s.dotZone) {
		return nil
	}
	if ns, _ := s.idx.lookup(rest); ns == nil {
		return nil
	}
	ip, ok := podAddress(label)
	if !ok {
		return nil
	}
	n := &node{}
	appendAddress(n, s.ctrl.b.address(name, ip))
	return n.seal()
}

// cnameReply answers a query for an ExternalName Service with its CNAME
// and, as a recursive resolver would, the target's records, so that stub
// resolvers that do not chase CNAMEs still get an address. A target outside
// the zone is returned for chaseCNAME when there are upstreams to ask.
func (s *Server) cnameReply(rep *reply, q *dns.Question, cname []dns.RR, soa []dns.RR) *dns.CNAME {
	rep.setAnswer(cname, q, strings.ToLower(q.Name), 0)
	target := cname[0].(*dns.CNAME)
	if !s.inZone(target.Target) {
		if len(s.upstreams) > 0 {
			return target
		}
		return nil
	}
	// One level only: an ExternalName pointing at a cluster name is rare,
	// and a longer chain could loop.
	if n, _ := s.idx.lookup(target.Target); n != nil {
		rep.msg.Answer = append(rep.msg.Answer, n.records(q.Qtype)...)
	} else {
		rep.msg.Rcode = dns.RcodeNameError // RFC 6604: the rcode of the last name
	}
	if len(rep.msg.Answer) == 1 {
		rep.msg.Ns = soa
	}
	return nil
}

// chaseCNAME adds what the upstreams answer for an ExternalName's target.
func (s *Server) chaseCNAME(rep *reply, r *dns.Msg, cname *dns.CNAME) {
	query := new(dns.Msg)
	query.SetQuestion(cname.Target, r.Question[0].Qtype)
	query.RecursionDesired = true
	if resp, err := s.exchange(query, false); err == nil {
		rep.msg.Answer = append(rep.msg.Answer, resp.Answer...)
		if resp.Rcode == dns.RcodeNameError {
			rep.msg.Rcode = dns.RcodeNameError // RFC 6604: the rcode of the last name
		}
	}
}
