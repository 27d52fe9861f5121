package main

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

// TestPlot renders three results and reads the PNG back: the chart's size, and something drawn.
func TestPlot(t *testing.T) {
	results := []Result{
		{Orgs: 500, LatencyMs: 100, Concurrency: 32, ConnectedRatio: 1.40, SweepRatio: 1.18, RSSMiB: 72, HeapMiB: 20},
		{Orgs: 2000, LatencyMs: 100, Concurrency: 32, ConnectedRatio: 1.59, SweepRatio: 1.26, RSSMiB: 88, HeapMiB: 32},
		{Orgs: 10000, LatencyMs: 100, Concurrency: 32, ConnectedRatio: 2.04, SweepRatio: 1.80, RSSMiB: 176, HeapMiB: 109},
	}
	path := filepath.Join(t.TempDir(), "scale.png")
	if err := plot(path, results); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != plotW || b.Dy() != plotH {
		t.Fatalf("size %dx%d, want %dx%d", b.Dx(), b.Dy(), plotW, plotH)
	}
	drawn := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if r, g, bl, _ := img.At(x, y).RGBA(); r != 0xffff || g != 0xffff || bl != 0xffff {
				drawn++
			}
		}
	}
	if drawn < 1000 {
		t.Fatalf("%d pixels not white: nothing drawn", drawn)
	}
}
