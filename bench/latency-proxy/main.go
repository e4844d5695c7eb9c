// latency-proxy: a TCP proxy that delays every chunk the client sends by -delay, so each S3
// request reaches the server `delay` late (the request's bytes arrive late); responses are
// forwarded at once. Used by bench/latency.ts to give the local S3 server the per-request
// latency of a real one. Standard library only.
//
//	latency-proxy -target 127.0.0.1:9000 [-delay 20ms] [-listen 127.0.0.1:0]
//
// Prints the port it listens on as the first line of stdout, then runs until killed. On SIGUSR1
// it prints one line to stdout, "stats conns=<accepted so far> active=<open now>
// max=<most open at once since the last stats line>", and resets the maximum.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

type chunk struct {
	at   time.Time // when it may be forwarded: arrival + delay
	data []byte
}

var (
	mu        sync.Mutex
	conns     int
	active    int
	maxActive int
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	target := flag.String("target", "", "host:port to forward to")
	delay := flag.Duration("delay", 20*time.Millisecond, "delay added to every client→server chunk")
	flag.Parse()
	if *target == "" {
		log.Fatal("latency-proxy: -target host:port is required")
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("latency-proxy: %v", err)
	}
	fmt.Printf("%d\n", ln.Addr().(*net.TCPAddr).Port)

	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for range usr1 {
			mu.Lock()
			fmt.Printf("stats conns=%d active=%d max=%d\n", conns, active, maxActive)
			maxActive = active
			mu.Unlock()
		}
	}()

	for {
		c, err := ln.Accept()
		if err != nil {
			log.Printf("latency-proxy: accept: %v", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go serve(c.(*net.TCPConn), *target, *delay)
	}
}

func serve(client *net.TCPConn, target string, delay time.Duration) {
	mu.Lock()
	conns++
	active++
	if active > maxActive {
		maxActive = active
	}
	mu.Unlock()
	defer func() {
		mu.Lock()
		active--
		mu.Unlock()
	}()
	defer client.Close()
	d, err := net.Dial("tcp", target)
	if err != nil {
		log.Printf("latency-proxy: dial %s: %v", target, err)
		return
	}
	server := d.(*net.TCPConn)
	defer server.Close()
	client.SetNoDelay(true)
	server.SetNoDelay(true)

	var wg sync.WaitGroup
	wg.Add(2)
	// server → client at once.
	go func() {
		defer wg.Done()
		if _, err := io.Copy(client, server); err != nil {
			client.Close() // a reset server or client: end both directions
			return
		}
		client.CloseWrite()
	}()
	// client → server: a reader stamps each chunk with its arrival time, a writer forwards it
	// at arrival + delay, in order.
	queue := make(chan chunk, 4096)
	go func() {
		defer close(queue)
		buf := make([]byte, 64*1024)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				data := make([]byte, n)
				copy(data, buf[:n])
				queue <- chunk{at: time.Now().Add(delay), data: data}
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		failed := false
		for c := range queue {
			if failed {
				continue // drain, so the reader never blocks on a dead connection
			}
			if wait := time.Until(c.at); wait > 0 {
				time.Sleep(wait)
			}
			if _, err := server.Write(c.data); err != nil {
				failed = true
				client.Close() // ends the reader
			}
		}
		server.CloseWrite()
	}()
	wg.Wait()
}
