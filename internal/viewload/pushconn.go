package viewload

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"
)

// pushConn is one simulated agent's keep-alive HTTP/1.1 connection to the view, written
// by hand: a request head built once and the body in one writev, and the answer's
// status line and headers read from a reused buffer. net/http's client spent some 85 µs
// of the generator's CPU a push (two goroutines a connection, a request and its header
// map per push, and the garbage of both), more than the view it loads; this keeps the
// generator under a third of the view's CPU, so that 10,000 agents fit on two cores
// beside the view. The view sees the same requests as from the exporter: the same
// headers, one push at a time on one connection. Any error closes the connection; the
// next push dials again.
type pushConn struct {
	addr    string // host:port
	head    []byte // the request up to the Content-Length value
	timeout time.Duration

	c  net.Conn
	br *bufio.Reader
}

// newPushConn is the connection of an agent pushing to base (http://host:port) with
// bearer token (if any), each push timing out after timeout.
func newPushConn(base, token string, timeout time.Duration) (*pushConn, error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("view URL %q: want http://host:port", base)
	}
	var h bytes.Buffer
	fmt.Fprintf(&h, "POST %s/api/v1/write HTTP/1.1\r\nHost: %s\r\n", u.Path, u.Host)
	h.WriteString("User-Agent: edgeprobe-viewload\r\nContent-Type: application/x-protobuf\r\n")
	h.WriteString("Content-Encoding: snappy\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\n")
	if token != "" {
		h.WriteString("Authorization: Bearer " + token + "\r\n")
	}
	h.WriteString("Content-Length: ")
	return &pushConn{addr: u.Host, head: h.Bytes(), timeout: timeout}, nil
}

// post sends body and reads the answer: its status code and the start of its body. A
// push on a kept connection that fails before any answer (the view closed it while
// idle) is sent once more on a new one, as net/http does.
func (p *pushConn) post(ctx context.Context, body []byte) (code int, msg []byte, err error) {
	deadline := time.Now().Add(p.timeout)
	for attempt := 0; ; attempt++ {
		reused := p.c != nil
		if !reused {
			d := net.Dialer{Deadline: deadline}
			c, err := d.DialContext(ctx, "tcp", p.addr)
			if err != nil {
				return 0, nil, err
			}
			p.c = c
			if p.br == nil {
				p.br = bufio.NewReaderSize(c, 4096)
			} else {
				p.br.Reset(c)
			}
		}
		c := p.c
		stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
		code, msg, answered, err := p.roundTrip(body, deadline)
		stop()
		if err == nil {
			return code, msg, nil
		}
		p.close()
		if !reused || answered || attempt > 0 || ctx.Err() != nil {
			return 0, nil, err
		}
	}
}

func (p *pushConn) roundTrip(body []byte, deadline time.Time) (code int, msg []byte, answered bool, err error) {
	if err := p.c.SetDeadline(deadline); err != nil {
		return 0, nil, false, err
	}
	var num [24]byte
	head := append(strconv.AppendInt(num[:0], int64(len(body)), 10), "\r\n\r\n"...)
	bufs := net.Buffers{p.head, head, body}
	if _, err := bufs.WriteTo(p.c); err != nil {
		return 0, nil, false, err
	}
	line, err := p.br.ReadSlice('\n')
	if err != nil {
		return 0, nil, len(line) > 0, err
	}
	// HTTP/1.1 204 No Content
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, nil, true, fmt.Errorf("bad status line %q", line)
	}
	if code, err = strconv.Atoi(string(line[9:12])); err != nil {
		return 0, nil, true, fmt.Errorf("bad status line %q", line)
	}
	length, chunked, closing := int64(-1), false, false
	for {
		line, err := p.br.ReadSlice('\n')
		if err != nil {
			return 0, nil, true, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "Content-Length"):
			if length, err = strconv.ParseInt(string(value), 10, 64); err != nil || length < 0 {
				return 0, nil, true, fmt.Errorf("bad Content-Length %q", value)
			}
		case asciiEqualFold(name, "Transfer-Encoding"):
			chunked = asciiEqualFold(value, "chunked")
		case asciiEqualFold(name, "Connection"):
			closing = asciiEqualFold(value, "close")
		}
	}
	var rd io.Reader
	switch {
	case code == 204 || code == 304:
		rd = bytes.NewReader(nil)
	case chunked:
		rd = httputil.NewChunkedReader(p.br)
	case length >= 0:
		rd = io.LimitReader(p.br, length)
	default:
		rd, closing = p.br, true // the body ends with the connection
	}
	// The answer is read whole, so that the connection can carry the next push; only
	// its first 512 bytes are kept.
	var kept bytes.Buffer
	if _, err := io.Copy(&kept, io.LimitReader(rd, 512)); err != nil {
		return 0, nil, true, err
	}
	if _, err := io.Copy(io.Discard, rd); err != nil {
		return 0, nil, true, err
	}
	if closing {
		p.close()
	}
	return code, kept.Bytes(), true, nil
}

func (p *pushConn) close() {
	if p.c != nil {
		p.c.Close()
		p.c = nil
	}
}

func asciiEqualFold(b []byte, s string) bool {
	return len(b) == len(s) && bytes.EqualFold(b, []byte(s))
}
