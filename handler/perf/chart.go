package perf

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// ScaleTable renders scale results as a markdown table.
func ScaleTable(rs []ScaleResult) string {
	var b strings.Builder
	b.WriteString("| projects | concurrency | auth | wall | lone project (floor) | ideal ⌈n/c⌉ × floor | wall / ideal | Atlas req/project | ARM req/project | Atlas 429s | failed | peak heap added | per project |\n")
	b.WriteString("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		auth := r.Auth
		if auth == "" {
			auth = AuthServiceAccount
		}
		if r.RateLimit > 0 {
			auth += fmt.Sprintf(", bucket %g/s burst %d", r.RateLimit, r.Burst)
		}
		added := uint64(0)
		if r.PeakHeap > r.BaseHeap {
			added = r.PeakHeap - r.BaseHeap
		}
		fmt.Fprintf(&b, "| %d | %d | %s | %s | %s | %s | %.2f | %.2f | %.2f | %d | %d | %s | %s |\n",
			r.Projects, r.Concurrency, auth, round(r.Wall), round(r.CriticalPath), round(r.Ideal), r.Ratio(),
			float64(r.AtlasRequests)/float64(r.Projects), float64(r.ARMRequests)/float64(r.Projects),
			r.Atlas429, r.Failed, MiB(added), KiB(uint64(r.HeapPerProject())))
	}
	return b.String()
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	default:
		return d.Round(100 * time.Microsecond)
	}
}

// MiB formats bytes as mebibytes.
func MiB(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// KiB formats bytes as kibibytes.
func KiB(n uint64) string { return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10)) }

// ScaleSVG draws wall time against projects (log–log), one solid line per
// concurrency with its ideal ⌈n/c⌉ × floor as a dashed line of the same
// colour. Rate-limited runs are left out. It is a hand-written SVG with no
// dependencies.
func ScaleSVG(rs []ScaleResult, title string) []byte {
	const (
		W, H                   = 640, 400
		left, right, top, bott = 70, 170, 40, 50
	)
	series := map[int][]ScaleResult{}
	var conc []int
	for _, r := range rs {
		if r.RateLimit > 0 || (r.Auth != "" && r.Auth != AuthServiceAccount) {
			continue
		}
		if _, ok := series[r.Concurrency]; !ok {
			conc = append(conc, r.Concurrency)
		}
		series[r.Concurrency] = append(series[r.Concurrency], r)
	}
	slices.Sort(conc)
	maxP, minS, maxS := 1, math.Inf(1), 0.0
	for _, r := range rs {
		maxP = max(maxP, r.Projects)
		for _, d := range []time.Duration{r.Wall, r.Ideal} {
			minS = math.Min(minS, d.Seconds())
			maxS = math.Max(maxS, d.Seconds())
		}
	}
	if maxS == 0 {
		minS, maxS = 0.01, 1
	}
	xMax := math.Ceil(math.Log10(float64(maxP)))
	yMin := math.Floor(math.Log10(minS))
	yMax := math.Ceil(math.Log10(maxS))
	if yMax == yMin {
		yMax++
	}
	if xMax == 0 {
		xMax = 1
	}
	px := func(p int) float64 { return left + math.Log10(float64(p))/xMax*(W-left-right) }
	py := func(d time.Duration) float64 {
		return top + (yMax-math.Log10(d.Seconds()))/(yMax-yMin)*(H-top-bott)
	}
	colours := []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", W, H)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="14" font-weight="bold">%s</text>`+"\n", left, escape(title))
	// Grid and axes.
	for e := 0.0; e <= xMax; e++ {
		x := left + e/xMax*(W-left-right)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", x, top, x, H-bott)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%g</text>`+"\n", x, H-bott+16, math.Pow(10, e))
	}
	for e := yMin; e <= yMax; e++ {
		y := top + (yMax-e)/(yMax-yMin)*(H-top-bott)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", left, y, W-right, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y+4, time.Duration(math.Pow(10, e)*float64(time.Second)))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#333"/>`+"\n", left, top, W-left-right, H-top-bott)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">projects reconciled (log)</text>`+"\n", left+(W-left-right)/2, H-12)
	fmt.Fprintf(&b, `<text x="16" y="%d" text-anchor="middle" transform="rotate(-90 16 %d)">wall time (log)</text>`+"\n", top+(H-top-bott)/2, top+(H-top-bott)/2)
	for i, c := range conc {
		col := colours[i%len(colours)]
		s := series[c]
		slices.SortFunc(s, func(a, b ScaleResult) int { return a.Projects - b.Projects })
		var wall, ideal []string
		for _, r := range s {
			wall = append(wall, fmt.Sprintf("%.1f,%.1f", px(r.Projects), py(r.Wall)))
			ideal = append(ideal, fmt.Sprintf("%.1f,%.1f", px(r.Projects), py(r.Ideal)))
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="1.5" stroke-dasharray="5,4"/>`+"\n", strings.Join(ideal, " "), col)
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(wall, " "), col)
		for _, r := range s {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%d projects, concurrency %d: %s (ideal %s)</title></circle>`+"\n",
				px(r.Projects), py(r.Wall), col, r.Projects, c, round(r.Wall), round(r.Ideal))
		}
		ly := top + 10 + i*36
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/><text x="%d" y="%d">concurrency %d</text>`+"\n",
			W-right+12, ly, W-right+36, ly, col, W-right+42, ly+4, c)
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="1.5" stroke-dasharray="5,4"/><text x="%d" y="%d">ideal ⌈n/%d⌉ × floor</text>`+"\n",
			W-right+12, ly+16, W-right+36, ly+16, col, W-right+42, ly+20, c)
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
