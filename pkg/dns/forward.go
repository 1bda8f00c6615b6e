package dns

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/miekg/dns"
)

// forward relays a query for a name outside the zone to the upstreams and
// the answer back, truncated to what the client can take over UDP.
func (s *Server) forward(w dns.ResponseWriter, r *dns.Msg) {
	_, overTCP := w.RemoteAddr().(*net.TCPAddr)
	resp, err := s.exchange(r, overTCP)
	if err != nil {
		rep := s.newReply(r)
		rep.msg.Rcode = dns.RcodeServerFailure
		if errors.Is(err, errNoUpstream) {
			// Nothing to ask is a policy, not a failure: the client
			// should try its next resolver at once.
			rep.msg.Rcode = dns.RcodeRefused
		}
		s.send(w, r, rep)
		return
	}
	resp.Id = r.Id
	if !overTCP {
		size := dns.MinMsgSize
		if opt := r.IsEdns0(); opt != nil {
			size = max(size, int(opt.UDPSize()))
		}
		resp.Truncate(size)
	}
	_ = w.WriteMsg(resp)
}

var errNoUpstream = errors.New("dns: no upstream resolver to forward to")

// exchange asks the upstreams in order until one answers. It goes over UDP
// and repeats over TCP when the answer was truncated and the client needs
// it whole (it came over TCP); a truncated answer is passed on to a UDP
// client, which will retry over TCP itself.
func (s *Server) exchange(m *dns.Msg, needWhole bool) (*dns.Msg, error) {
	var (
		lastErr  = errNoUpstream
		fallback *dns.Msg
	)
	for _, upstream := range s.upstreams {
		if s.isLoop(upstream) {
			continue
		}
		addr := upstream.String()
		resp, _, err := s.udpClient.Exchange(m, addr)
		if err == nil && resp.Truncated && needWhole {
			resp, _, err = s.tcpClient.Exchange(m, addr)
		}
		if err != nil {
			lastErr = fmt.Errorf("dns: forward to %s: %w", addr, err)
			continue
		}
		if resp.Rcode == dns.RcodeServerFailure || resp.Rcode == dns.RcodeRefused {
			// Another upstream may know better; pass this answer on
			// only if none does.
			fallback = resp
			continue
		}
		return resp, nil
	}
	if fallback != nil {
		return fallback, nil
	}
	return nil, lastErr
}

// isLoop says whether forwarding to upstream would reach this server: one
// of its own listeners, or a ClusterIP (a host whose resolv.conf names the
// cluster DNS Service would otherwise send a name round in circles).
func (s *Server) isLoop(upstream netip.AddrPort) bool {
	s.listenMu.RLock()
	for _, l := range s.listen {
		if l == upstream || (l.Addr().IsUnspecified() && l.Port() == upstream.Port() && upstream.Addr().IsLoopback()) {
			s.listenMu.RUnlock()
			return true
		}
	}
	s.listenMu.RUnlock()
	return s.idx.isClusterIP(upstream.Addr())
}

// ResolvConfUpstreams returns the nameservers of a resolv.conf file (the
// host's /etc/resolv.conf, say) as "ip:53" addresses for Config.Upstreams.
func ResolvConfUpstreams(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	var upstreams []string
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		line, _, _ := strings.Cut(scanner.Text(), "#")
		line, _, _ = strings.Cut(line, ";")
		fields := strings.Fields(line)
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		ip, err := netip.ParseAddr(fields[1])
		if err != nil {
			continue // as the C library does with what it cannot parse
		}
		upstreams = append(upstreams, netip.AddrPortFrom(ip, 53).String())
	}
	if err := scanner.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return upstreams, nil
}
