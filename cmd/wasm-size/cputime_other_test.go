//go:build !linux

package main

import "time"

// threadCPU is not measured outside Linux; the CPU metrics read 0 there.
func threadCPU() time.Duration { return 0 }
