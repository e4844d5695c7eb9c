// slowfs: a loopback FUSE filesystem that adds a fixed delay to every metadata request
// (lookup, create, mkdir, setattr, unlink, rmdir), like a network filesystem (NFS, EFS) where
// each of those is a round trip to the server. Requests are served concurrently, as a server
// would; the kernel still serialises creates within one directory (its lock). Data reads and
// writes pass through without delay. bench/slow-storage.ts builds and mounts it (root and
// /dev/fuse needed: DirectMount, no fusermount).
//
//	slowfs [-delay 1ms] <backing dir> <mount point>    (unmount: SIGTERM, or umount)
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

var delay time.Duration

type slowNode struct{ fs.LoopbackNode }

func newNode(root *fs.LoopbackRoot, parent *fs.Inode, name string, st *syscall.Stat_t) fs.InodeEmbedder {
	return &slowNode{LoopbackNode: fs.LoopbackNode{RootData: root}}
}

func wait() { time.Sleep(delay) }

func (n *slowNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	wait()
	return n.LoopbackNode.Lookup(ctx, name, out)
}
func (n *slowNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	wait()
	return n.LoopbackNode.Create(ctx, name, flags, mode, out)
}
func (n *slowNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	wait()
	return n.LoopbackNode.Mkdir(ctx, name, mode, out)
}
func (n *slowNode) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	wait()
	return n.LoopbackNode.Setattr(ctx, f, in, out)
}
func (n *slowNode) Unlink(ctx context.Context, name string) syscall.Errno {
	wait()
	return n.LoopbackNode.Unlink(ctx, name)
}
func (n *slowNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	wait()
	return n.LoopbackNode.Rmdir(ctx, name)
}

func main() {
	flag.DurationVar(&delay, "delay", time.Millisecond, "delay per metadata request")
	flag.Parse()
	if flag.NArg() != 2 {
		log.Fatal("usage: slowfs [-delay 1ms] <backing dir> <mount point>")
	}
	root := &fs.LoopbackRoot{Path: flag.Arg(0), NewNode: newNode}
	var st syscall.Stat_t
	if err := syscall.Stat(flag.Arg(0), &st); err != nil {
		log.Fatal(err)
	}
	root.Dev = uint64(st.Dev)
	rootNode := newNode(root, nil, "", &st)
	root.RootNode = rootNode
	sec := time.Second
	server, err := fs.Mount(flag.Arg(1), rootNode, &fs.Options{
		EntryTimeout: &sec, AttrTimeout: &sec,
		MountOptions: fuse.MountOptions{DirectMount: true, AllowOther: true, Name: "slowfs", MaxBackground: 64},
	})
	if err != nil {
		log.Fatal(err)
	}
	c := make(chan os.Signal, 1)
	signal.Notify(c, os.Interrupt, syscall.SIGTERM)
	go func() { <-c; server.Unmount() }()
	server.Wait()
}
