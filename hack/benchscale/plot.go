package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"strconv"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// The targets the dashed lines mark: what one manager should fit in, and how far above the ideal
// a sweep may take.
const (
	targetRSSMiB     = 100
	targetSweepRatio = 1.2
)

// The canvas and the plot area inside it, in pixels.
const (
	plotW, plotH = 800, 500
	areaL, areaR = 76, plotW - 84
	areaT, areaB = 62, plotH - 92
)

var (
	white    = color.RGBA{255, 255, 255, 255}
	ink      = color.RGBA{34, 34, 34, 255}
	faint    = color.RGBA{232, 232, 232, 255}
	rssC     = color.RGBA{31, 100, 190, 255}
	sweepC   = color.RGBA{205, 35, 35, 255}
	connectC = color.RGBA{230, 130, 0, 255}
)

// face is the only font the chart uses: basicfont's 7×13 ASCII bitmap, so no "·" or "×" (the
// labels write "x").
var face font.Face = basicfont.Face7x13

// plot draws the results on a white 800×500 PNG: the manager's RSS against the left axis (MiB),
// and the sweep's and the first connections' times as ratios to their ideals (N·L/C, N·2L/C)
// against the right one, each by the number of orgs (ticks at each measured N), with the 100 MiB
// and 1.2× targets dashed. The README's table carries the numbers; the picture shows the trend.
func plot(path string, results []Result) error {
	return save(path, chart(results))
}

func chart(results []Result) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, plotW, plotH))
	draw.Draw(img, img.Bounds(), image.NewUniform(white), image.Point{}, draw.Src)

	title := "bench-scale: manager memory and check time by number of orgs"
	textAt(img, plotW/2-width(title)/2, 22, title, ink)
	textAt(img, plotW/2-width(title)/2+1, 22, title, ink) // bold
	if len(results) > 0 {
		sub := fmt.Sprintf("fake Salesforce answering in %d ms, %d concurrent checks; a ratio of 1 is the ideal time",
			results[0].LatencyMs, results[0].Concurrency)
		textAt(img, plotW/2-width(sub)/2, 42, sub, ink)
	}

	maxN, maxRSS, maxRatio := 0, float64(targetRSSMiB), targetSweepRatio
	for _, r := range results {
		maxN = max(maxN, r.Orgs)
		maxRSS = max(maxRSS, finite(r.RSSMiB))
		maxRatio = max(maxRatio, finite(r.SweepRatio), finite(r.ConnectedRatio))
	}
	rssStep := niceStep(maxRSS*1.08, 5)
	rssTop := math.Ceil(maxRSS*1.08/rssStep) * rssStep
	ratioStep := niceStep(maxRatio*1.08, 5)
	ratioTop := math.Ceil(maxRatio*1.08/ratioStep) * ratioStep
	yv := func(v, top float64) int { return areaB - int(math.Round(float64(areaB-areaT)*min(finite(v), top)/top)) }
	// Keep the two dashed lines apart: one could be read for the other.
	for i := 0; i < 3 && abs(yv(targetRSSMiB, rssTop)-yv(targetSweepRatio, ratioTop)) < 28; i++ {
		ratioTop += ratioStep
	}
	xTop := float64(max(maxN, 1)) * 1.04
	xv := func(n int) int { return areaL + int(math.Round(float64(areaR-areaL)*float64(n)/xTop)) }

	// Grid and ticks: left axis (RSS), right axis (ratio), bottom axis at each measured N.
	for i := 0; float64(i)*rssStep <= rssTop+rssStep/2; i++ {
		v := float64(i) * rssStep
		y := yv(v, rssTop)
		hline(img, areaL+1, areaR-1, y, faint)
		line(img, areaL-5, y, areaL, y, ink, 1)
		s := strconv.FormatFloat(v, 'f', -1, 64)
		textAt(img, areaL-8-width(s), y+4, s, rssC)
	}
	for i := 0; float64(i)*ratioStep <= ratioTop+ratioStep/2; i++ {
		v := float64(i) * ratioStep
		y := yv(v, ratioTop)
		line(img, areaR, y, areaR+5, y, ink, 1)
		textAt(img, areaR+8, y+4, strconv.FormatFloat(v, 'f', 1, 64), ink)
	}
	lastEnd := areaL - 100
	for _, r := range results {
		x := xv(r.Orgs)
		line(img, x, areaB, x, areaB+5, ink, 1)
		s := strconv.Itoa(r.Orgs)
		if x-width(s)/2 > lastEnd+4 { // a label that would overlap the last is left out
			textAt(img, x-width(s)/2, areaB+18, s, ink)
			lastEnd = x + width(s)/2
		}
	}
	rect(img, areaL, areaT, areaR, areaB, ink)

	// Axis titles.
	textAt(img, (areaL+areaR)/2-width("orgs")/2, areaB+38, "orgs", ink)
	vtextAt(img, 16, (areaT+areaB)/2, "manager RSS (MiB)", rssC)
	vtextAt(img, plotW-22, (areaT+areaB)/2, "time / ideal time (ratio)", ink)

	// The targets, dashed and labelled.
	y := yv(targetRSSMiB, rssTop)
	dashed(img, areaL+1, areaR-1, y, rssC)
	label(img, areaL+6, y-4, fmt.Sprintf("target %d MiB", targetRSSMiB), rssC)
	y = yv(targetSweepRatio, ratioTop)
	dashed(img, areaL+1, areaR-1, y, sweepC)
	s := "target " + strconv.FormatFloat(targetSweepRatio, 'f', -1, 64) + "x (sweep)"
	label(img, areaR-6-width(s), y-4, s, sweepC)

	// The series: first connections, sweep, RSS (drawn last, on top).
	series := []struct {
		c      color.RGBA
		marker func(*image.RGBA, int, int, color.RGBA)
		y      func(Result) int
		name   string
	}{
		{connectC, diamond, func(r Result) int { return yv(r.ConnectedRatio, ratioTop) }, "first connections / Nx2L/C (right)"},
		{sweepC, square, func(r Result) int { return yv(r.SweepRatio, ratioTop) }, "re-check sweep / NxL/C (right)"},
		{rssC, circle, func(r Result) int { return yv(r.RSSMiB, rssTop) }, "manager RSS (left)"},
	}
	for _, sr := range series {
		for i := 1; i < len(results); i++ {
			a, b := results[i-1], results[i]
			line(img, xv(a.Orgs), sr.y(a), xv(b.Orgs), sr.y(b), sr.c, 2)
		}
		for _, r := range results {
			sr.marker(img, xv(r.Orgs), sr.y(r), sr.c)
		}
	}

	// The legend, one row under the axis title, in the order of the axes.
	const swatch, gap = 26, 22
	total := 0
	for _, sr := range series {
		total += swatch + 6 + width(sr.name) + gap
	}
	x, ly := plotW/2-(total-gap)/2, plotH-22
	for i := len(series) - 1; i >= 0; i-- {
		sr := series[i]
		line(img, x, ly, x+swatch, ly, sr.c, 2)
		sr.marker(img, x+swatch/2, ly, sr.c)
		textAt(img, x+swatch+6, ly+4, sr.name, ink)
		x += swatch + 6 + width(sr.name) + gap
	}
	return img
}

// finite is v, or 0 for a value no run should give (a ratio to an ideal of 0 s is infinite).
func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0
	}
	return v
}

// niceStep is a round step (1, 2, 2.5 or 5 times a power of ten) that divides 0..top into about n.
func niceStep(top float64, n int) float64 {
	raw := top / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5} {
		if m*mag >= raw {
			return m * mag
		}
	}
	return 10 * mag
}

func width(s string) int { return font.MeasureString(face, s).Ceil() }

// textAt draws s with its baseline at y.
func textAt(img draw.Image, x, y int, s string, c color.Color) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: face, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

// label draws s on a white patch, so that a line under it does not hide it.
func label(img *image.RGBA, x, y int, s string, c color.Color) {
	m := face.Metrics()
	r := image.Rect(x-2, y-m.Ascent.Ceil()-1, x+width(s)+2, y+m.Descent.Ceil()+1)
	draw.Draw(img, r, image.NewUniform(white), image.Point{}, draw.Src)
	textAt(img, x, y, s, c)
}

// vtextAt draws s turned a quarter left (read from the bottom up), centred on (cx, cy).
func vtextAt(img *image.RGBA, cx, cy int, s string, c color.Color) {
	m := face.Metrics()
	w, h := width(s), (m.Ascent + m.Descent).Ceil()
	tmp := image.NewRGBA(image.Rect(0, 0, w, h))
	textAt(tmp, 0, m.Ascent.Ceil(), s, c)
	x0, y0 := cx-h/2, cy-w/2
	for x := range w {
		for y := range h {
			if px := tmp.RGBAAt(x, y); px.A > 0 {
				img.Set(x0+y, y0+w-1-x, px)
			}
		}
	}
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

// line draws from (x0, y0) to (x1, y1) with a square pen of size pen.
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA, pen int) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		for px := range pen {
			for py := range pen {
				img.SetRGBA(x0+px-pen/2, y0+py-pen/2, c)
			}
		}
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

func hline(img *image.RGBA, x0, x1, y int, c color.RGBA) { line(img, x0, y, x1, y, c, 1) }

func dashed(img *image.RGBA, x0, x1, y int, c color.RGBA) {
	for x := x0; x <= x1; x += 10 {
		line(img, x, y, min(x+5, x1), y, c, 1)
		line(img, x, y+1, min(x+5, x1), y+1, c, 1)
	}
}

func rect(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	line(img, x0, y0, x1, y0, c, 1)
	line(img, x0, y1, x1, y1, c, 1)
	line(img, x0, y0, x0, y1, c, 1)
	line(img, x1, y0, x1, y1, c, 1)
}

func circle(img *image.RGBA, x, y int, c color.RGBA) {
	for dx := -4; dx <= 4; dx++ {
		for dy := -4; dy <= 4; dy++ {
			if dx*dx+dy*dy <= 18 {
				img.SetRGBA(x+dx, y+dy, c)
			}
		}
	}
}

func square(img *image.RGBA, x, y int, c color.RGBA) {
	for dx := -3; dx <= 3; dx++ {
		for dy := -3; dy <= 3; dy++ {
			img.SetRGBA(x+dx, y+dy, c)
		}
	}
}

func diamond(img *image.RGBA, x, y int, c color.RGBA) {
	for dx := -5; dx <= 5; dx++ {
		for dy := -5; dy <= 5; dy++ {
			if abs(dx)+abs(dy) <= 5 {
				img.SetRGBA(x+dx, y+dy, c)
			}
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
