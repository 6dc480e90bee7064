package assets

import (
	"bytes"
	"encoding/binary"
	"image/png"
	"testing"
)

func TestIcons(t *testing.T) {
	for _, name := range TrayNames {
		b, err := TrayIcon(name, false)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s.png: %v", name, err)
		}
		if img.Bounds().Dx() != 64 || img.Bounds().Dy() != 64 {
			t.Errorf("%s.png is %v, want 64×64", name, img.Bounds())
		}
		ico, err := TrayIcon(name, true)
		if err != nil {
			t.Fatal(err)
		}
		checkICO(t, name+".ico", ico)
	}
	if _, err := TrayIcon("nonsense", false); err == nil {
		t.Error("TrayIcon of an unknown name succeeded")
	}
	img, err := png.Decode(bytes.NewReader(AppIcon(false)))
	if err != nil || img.Bounds().Dx() != 256 {
		t.Fatalf("app icon: %v, %v", err, img.Bounds())
	}
	checkICO(t, "nymvpn.ico", AppIcon(true))
}

// checkICO checks an ICO's header and that each entry is a PNG of the size
// its directory entry claims.
func checkICO(t *testing.T, name string, b []byte) {
	t.Helper()
	var h [3]uint16
	if err := binary.Read(bytes.NewReader(b), binary.LittleEndian, &h); err != nil || h[0] != 0 || h[1] != 1 || h[2] == 0 {
		t.Fatalf("%s: header %v, %v", name, h, err)
	}
	for i := 0; i < int(h[2]); i++ {
		e := b[6+16*i : 6+16*(i+1)]
		size := binary.LittleEndian.Uint32(e[8:])
		off := binary.LittleEndian.Uint32(e[12:])
		img, err := png.Decode(bytes.NewReader(b[off : off+size]))
		if err != nil {
			t.Fatalf("%s entry %d: %v", name, i, err)
		}
		want := int(e[0])
		if want == 0 {
			want = 256
		}
		if img.Bounds().Dx() != want {
			t.Errorf("%s entry %d: %d px, directory says %d", name, i, img.Bounds().Dx(), want)
		}
	}
}
