// Command fairway-cacheprog is the GOCACHEPROG program of Fairway's shared build cache
// (docs/distributed.md, "Shared build cache").
//
// The go command starts it, sends JSON requests on its stdin and reads JSON responses on its
// stdout (the protocol of cmd/go/internal/cacheprog). It keeps no state and has no network: it
// relays every get and put to the Fairway builder process over the unix socket named by
// FAIRWAY_GOCACHE_SOCKET, as small HTTP requests:
//
//	GET /get/<action hex>               200 {"Miss":bool,"OutputID":"<hex>","Size":n,"Time":"…","DiskPath":"…"}
//	PUT /put/<action hex>/<output hex>  body: the object's bytes; 200 {"DiskPath":"…"}
//
// The builder checks every body against its OutputID, keeps the entries and answers with a
// DiskPath the go command can read (read-only). Standard library only.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// request is what the go command sends (cacheprog.Request; Body follows as a base64 JSON string).
type request struct {
	ID       int64
	Command  string
	ActionID []byte `json:",omitempty"`
	OutputID []byte `json:",omitempty"`
	BodySize int64  `json:",omitempty"`
}

// response is what the go command reads (cacheprog.Response).
type response struct {
	ID            int64
	Err           string     `json:",omitempty"`
	KnownCommands []string   `json:",omitempty"`
	Miss          bool       `json:",omitempty"`
	OutputID      []byte     `json:",omitempty"`
	Size          int64      `json:",omitempty"`
	Time          *time.Time `json:",omitempty"`
	DiskPath      string     `json:",omitempty"`
}

// answer is what the builder answers over the socket.
type answer struct {
	Miss     bool
	OutputID string
	Size     int64
	Time     *time.Time
	DiskPath string
	Err      string
}

const socketEnv = "FAIRWAY_GOCACHE_SOCKET"

func main() {
	socket := os.Getenv(socketEnv)
	if socket == "" {
		fmt.Fprintf(os.Stderr, "fairway-cacheprog: %s is not set\n", socketEnv)
		os.Exit(2)
	}
	client := &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
			MaxIdleConnsPerHost: 16,
			DisableCompression:  true,
		},
		Timeout: 10 * time.Minute,
	}
	if err := serve(os.Stdin, os.Stdout, client); err != nil {
		fmt.Fprintf(os.Stderr, "fairway-cacheprog: %v\n", err)
		os.Exit(1)
	}
}

// serve answers the go command until it sends "close" or closes stdin.
func serve(in io.Reader, out io.Writer, client *http.Client) error {
	bw := bufio.NewWriter(out)
	var wmu sync.Mutex
	enc := json.NewEncoder(bw)
	write := func(r *response) {
		wmu.Lock()
		defer wmu.Unlock()
		_ = enc.Encode(r)
		_ = bw.Flush()
	}
	write(&response{ID: 0, KnownCommands: []string{"get", "put", "close"}})

	dec := json.NewDecoder(bufio.NewReaderSize(in, 1<<20))
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		var req request
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("reading a request: %w", err)
		}
		switch req.Command {
		case "close":
			wg.Wait()
			write(&response{ID: req.ID})
			return nil
		case "get":
			wg.Add(1)
			go func(req request) {
				defer wg.Done()
				write(get(client, req))
			}(req)
		case "put":
			// The body is the next JSON value (a base64 string); it must be read before the next request.
			var body []byte
			if req.BodySize > 0 {
				var b64 string
				if err := dec.Decode(&b64); err != nil {
					return fmt.Errorf("reading the body of request %d: %w", req.ID, err)
				}
				var err error
				body, err = base64.StdEncoding.DecodeString(b64)
				if err != nil {
					return fmt.Errorf("decoding the body of request %d: %w", req.ID, err)
				}
			}
			wg.Add(1)
			go func(req request, body []byte) {
				defer wg.Done()
				write(put(client, req, body))
			}(req, body)
		default:
			write(&response{ID: req.ID, Err: "unknown command " + strconv.Quote(req.Command)})
		}
	}
}

func get(client *http.Client, req request) *response {
	if len(req.ActionID) == 0 {
		return &response{ID: req.ID, Err: "get without an ActionID"}
	}
	a, err := call(client, http.MethodGet, "/get/"+hex.EncodeToString(req.ActionID), nil)
	if err != nil {
		// A cache that cannot answer is a miss: the go command builds the object itself.
		fmt.Fprintf(os.Stderr, "fairway-cacheprog: get: %v (treated as a miss)\n", err)
		return &response{ID: req.ID, Miss: true}
	}
	if a.Miss {
		return &response{ID: req.ID, Miss: true}
	}
	oid, err := hex.DecodeString(a.OutputID)
	if err != nil || a.DiskPath == "" {
		return &response{ID: req.ID, Miss: true}
	}
	return &response{ID: req.ID, OutputID: oid, Size: a.Size, Time: a.Time, DiskPath: a.DiskPath}
}

func put(client *http.Client, req request, body []byte) *response {
	if len(req.ActionID) == 0 || len(req.OutputID) == 0 || int64(len(body)) != req.BodySize {
		return &response{ID: req.ID, Err: "malformed put"}
	}
	a, err := call(client, http.MethodPut, "/put/"+hex.EncodeToString(req.ActionID)+"/"+hex.EncodeToString(req.OutputID), body)
	if err != nil {
		return &response{ID: req.ID, Err: err.Error()}
	}
	return &response{ID: req.ID, DiskPath: a.DiskPath}
}

func call(client *http.Client, method, path string, body []byte) (*answer, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	hreq, err := http.NewRequest(method, "http://fairway-gocache"+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		hreq.ContentLength = int64(len(body))
	}
	res, err := client.Do(hreq)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var a answer
	if err := json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&a); err != nil {
		return nil, fmt.Errorf("%s %s: status %d, unreadable answer: %w", method, path, res.StatusCode, err)
	}
	if res.StatusCode != http.StatusOK {
		if a.Err == "" {
			a.Err = res.Status
		}
		return nil, fmt.Errorf("%s", a.Err)
	}
	return &a, nil
}
