package main

import (
	"image"
	"image/color"
	"image/png"
	"os"
)

// plot draws RSS (blue, left scale up to the largest value) and the sweep ratio (red, right
// scale up to 2×, the dashed line at the 1.2× target) against the number of orgs, on a white
// 640×400 canvas. The README's table carries the numbers; the picture shows the trend.
func plot(path string, results []Result) error {
	const w, h, pad = 640, 400, 40
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	black := color.RGBA{0, 0, 0, 255}
	line(img, pad, h-pad, w-pad, h-pad, black)
	line(img, pad, pad, pad, h-pad, black)
	line(img, w-pad, pad, w-pad, h-pad, black)
	if len(results) == 0 {
		return save(path, img)
	}
	maxN, maxRSS := 0, 0.0
	for _, r := range results {
		maxN = max(maxN, r.Orgs)
		maxRSS = max(maxRSS, r.RSSMiB, 100)
	}
	x := func(n int) int { return pad + (w-2*pad)*n/maxN }
	y := func(v, top float64) int { return h - pad - int(float64(h-2*pad)*min(v, top)/top) }
	for xx := pad; xx < w-pad; xx += 8 { // the 1.2× target
		line(img, xx, y(1.2, 2), xx+4, y(1.2, 2), color.RGBA{200, 0, 0, 255})
	}
	for xx := pad; xx < w-pad; xx += 8 { // the 100 MiB target
		line(img, xx, y(100, maxRSS), xx+4, y(100, maxRSS), color.RGBA{0, 0, 200, 255})
	}
	for i := 1; i < len(results); i++ {
		a, b := results[i-1], results[i]
		line(img, x(a.Orgs), y(a.RSSMiB, maxRSS), x(b.Orgs), y(b.RSSMiB, maxRSS), color.RGBA{0, 0, 255, 255})
		line(img, x(a.Orgs), y(a.SweepRatio, 2), x(b.Orgs), y(b.SweepRatio, 2), color.RGBA{255, 0, 0, 255})
	}
	for _, r := range results {
		dot(img, x(r.Orgs), y(r.RSSMiB, maxRSS), color.RGBA{0, 0, 255, 255})
		dot(img, x(r.Orgs), y(r.SweepRatio, 2), color.RGBA{255, 0, 0, 255})
	}
	return save(path, img)
}

func save(path string, img image.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func line(img *image.RGBA, x0, y0, x1, y1 int, c color.Color) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		img.Set(x0, y0, c)
		img.Set(x0, y0+1, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			x0 += sx
		} else {
			e += dx
			y0 += sy
		}
	}
}

func dot(img *image.RGBA, x, y int, c color.Color) {
	for dx := -3; dx <= 3; dx++ {
		for dy := -3; dy <= 3; dy++ {
			img.Set(x+dx, y+dy, c)
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}
