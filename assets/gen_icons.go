//go:build ignore

// gen_icons draws the app icon and the tray icons (one per tunnel state) and
// writes them as PNG and ICO (Windows' tray takes ICO) into this directory.
// Run it with `go generate ./assets` after changing a shape or a colour.
package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"log"
	"math"
	"os"

	"golang.org/x/image/vector"
)

// Colours of the states; the app's view model uses the same ones.
var (
	green  = color.NRGBA{0x1f, 0xaa, 0x59, 0xff}
	amber  = color.NRGBA{0xe0, 0x9a, 0x00, 0xff}
	grey   = color.NRGBA{0x8a, 0x8f, 0x98, 0xff}
	red    = color.NRGBA{0xd6, 0x45, 0x45, 0xff}
	navy   = color.NRGBA{0x15, 0x1b, 0x2e, 0xff}
	white  = color.NRGBA{0xff, 0xff, 0xff, 0xff}
	clear_ = color.NRGBA{}
)

// pen draws filled paths in unit coordinates (0..1) onto a square image.
type pen struct {
	img  *image.NRGBA
	size float32
}

func (p pen) fill(c color.Color, build func(r *vector.Rasterizer, s float32)) {
	r := vector.NewRasterizer(int(p.size), int(p.size))
	build(r, p.size)
	if c != clear_ {
		r.Draw(p.img, p.img.Bounds(), image.NewUniform(c), image.Point{})
		return
	}
	// Erase: scale what is there by the shape's coverage left uncovered.
	mask := image.NewAlpha(p.img.Bounds())
	r.Draw(mask, mask.Bounds(), image.Opaque, image.Point{})
	for i, a := range mask.Pix {
		p.img.Pix[4*i+3] = uint8(uint32(p.img.Pix[4*i+3]) * (255 - uint32(a)) / 255)
	}
}

// shield is the VPN's shape, inset by in (unit coordinates).
func shield(in float32) func(r *vector.Rasterizer, s float32) {
	return func(r *vector.Rasterizer, s float32) {
		pt := func(x, y float32) (float32, float32) {
			// Shrink towards the shield's centre (0.5, 0.5).
			k := 1 - 2*in
			return (0.5 + (x-0.5)*k) * s, (0.5 + (y-0.5)*k) * s
		}
		r.MoveTo(pt(0.5, 0.04))
		r.LineTo(pt(0.9, 0.18))
		r.LineTo(pt(0.9, 0.46))
		x1, y1 := pt(0.88, 0.8)
		x2, y2 := pt(0.5, 0.97)
		r.QuadTo(x1, y1, x2, y2)
		x1, y1 = pt(0.12, 0.8)
		x2, y2 = pt(0.1, 0.46)
		r.QuadTo(x1, y1, x2, y2)
		r.LineTo(pt(0.1, 0.18))
		r.ClosePath()
	}
}

func circle(cx, cy, rad float32) func(r *vector.Rasterizer, s float32) {
	return func(r *vector.Rasterizer, s float32) {
		const k = 0.5523 // cubic Bézier approximation of a quarter circle
		x, y, q := cx*s, cy*s, rad*s
		r.MoveTo(x+q, y)
		r.CubeTo(x+q, y+k*q, x+k*q, y+q, x, y+q)
		r.CubeTo(x-k*q, y+q, x-q, y+k*q, x-q, y)
		r.CubeTo(x-q, y-k*q, x-k*q, y-q, x, y-q)
		r.CubeTo(x+k*q, y-q, x+q, y-k*q, x+q, y)
		r.ClosePath()
	}
}

// poly is a polygon in unit coordinates.
func poly(pts ...float32) func(r *vector.Rasterizer, s float32) {
	return func(r *vector.Rasterizer, s float32) {
		r.MoveTo(pts[0]*s, pts[1]*s)
		for i := 2; i < len(pts); i += 2 {
			r.LineTo(pts[i]*s, pts[i+1]*s)
		}
		r.ClosePath()
	}
}

// stroke is a thick segment from (x0,y0) to (x1,y1) of width w.
func stroke(x0, y0, x1, y1, w float32) func(r *vector.Rasterizer, s float32) {
	dx, dy := x1-x0, y1-y0
	l := float32(math.Hypot(float64(dx), float64(dy)))
	nx, ny := -dy/l*w/2, dx/l*w/2
	return poly(x0+nx, y0+ny, x1+nx, y1+ny, x1-nx, y1-ny, x0-nx, y0-ny)
}

// tray draws the icon of one state.
func tray(state string, size int) *image.NRGBA {
	p := pen{img: image.NewNRGBA(image.Rect(0, 0, size, size)), size: float32(size)}
	switch state {
	case "connected":
		p.fill(green, shield(0))
		p.fill(white, stroke(0.3, 0.5, 0.45, 0.65, 0.11))
		p.fill(white, stroke(0.41, 0.65, 0.71, 0.35, 0.11))
	case "connecting":
		p.fill(amber, shield(0))
		for _, x := range []float32{0.3, 0.5, 0.7} {
			p.fill(white, circle(x, 0.5, 0.07))
		}
	case "disconnected":
		p.fill(grey, shield(0))
		p.fill(clear_, shield(0.09))
	case "error":
		p.fill(red, shield(0))
		p.fill(white, poly(0.45, 0.24, 0.55, 0.24, 0.53, 0.6, 0.47, 0.6))
		p.fill(white, circle(0.5, 0.72, 0.06))
	case "nodaemon":
		p.fill(grey, shield(0))
		p.fill(clear_, shield(0.09))
		p.fill(grey, stroke(0.22, 0.22, 0.78, 0.8, 0.1))
	default:
		log.Fatalf("unknown state %q", state)
	}
	return p.img
}

// appIcon is the application's icon: the connected shield on a dark tile.
func appIcon(size int) *image.NRGBA {
	p := pen{img: image.NewNRGBA(image.Rect(0, 0, size, size)), size: float32(size)}
	const rr = 0.2 // corner radius
	p.fill(navy, func(r *vector.Rasterizer, s float32) {
		r.MoveTo(rr*s, 0)
		r.LineTo((1-rr)*s, 0)
		r.QuadTo(s, 0, s, rr*s)
		r.LineTo(s, (1-rr)*s)
		r.QuadTo(s, s, (1-rr)*s, s)
		r.LineTo(rr*s, s)
		r.QuadTo(0, s, 0, (1-rr)*s)
		r.LineTo(0, rr*s)
		r.QuadTo(0, 0, rr*s, 0)
		r.ClosePath()
	})
	p.fill(green, shield(0.16))
	p.fill(navy, shield(0.23))
	p.fill(green, circle(0.5, 0.5, 0.11))
	return p.img
}

func encodePNG(img image.Image) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		log.Fatal(err)
	}
	return b.Bytes()
}

// encodeICO wraps PNG images in an ICO container (PNG entries are read by
// every Windows since Vista).
func encodeICO(imgs ...image.Image) []byte {
	var head, body bytes.Buffer
	binary.Write(&head, binary.LittleEndian, [3]uint16{0, 1, uint16(len(imgs))})
	offset := 6 + 16*len(imgs)
	for _, img := range imgs {
		data := encodePNG(img)
		w := img.Bounds().Dx()
		if w >= 256 {
			w = 0
		}
		head.Write([]byte{byte(w), byte(w), 0, 0})
		binary.Write(&head, binary.LittleEndian, [2]uint16{1, 32})
		binary.Write(&head, binary.LittleEndian, [2]uint32{uint32(len(data)), uint32(offset)})
		offset += len(data)
		body.Write(data)
	}
	return append(head.Bytes(), body.Bytes()...)
}

func write(name string, data []byte) {
	if err := os.WriteFile(name, data, 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Println("wrote", name)
}

func main() {
	for _, st := range []string{"connected", "connecting", "disconnected", "error", "nodaemon"} {
		write("tray/"+st+".png", encodePNG(tray(st, 64)))
		write("tray/"+st+".ico", encodeICO(tray(st, 16), tray(st, 32), tray(st, 64)))
	}
	write("app/nymvpn.png", encodePNG(appIcon(256)))
	write("app/nymvpn.ico", encodeICO(appIcon(16), appIcon(32), appIcon(48), appIcon(256)))
}
