// Package ui draws nymvpn-app's window with Gio: it lays out the
// viewmodel.View of the app's current viewmodel.Model and turns the user's
// clicks into viewmodel.Intents for the app's controller. It makes no calls
// and keeps only widget state (which page is open, what is typed), so a frame
// never waits for the daemon.
//
// The header, the status block and the big button have fixed places (see
// PrimaryButton), so tests — and xdotool under Xvfb — know where to click.
package ui

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"strconv"
	"strings"

	"gioui.org/font"
	"gioui.org/font/gofont"
	"gioui.org/io/key"
	"gioui.org/io/semantic"
	"gioui.org/layout"
	"gioui.org/op"
	"gioui.org/op/clip"
	"gioui.org/op/paint"
	"gioui.org/text"
	"gioui.org/unit"
	"gioui.org/widget"
	"gioui.org/widget/material"

	"github.com/nymvpn/nymvpn/app/viewmodel"
	"github.com/nymvpn/nymvpn/assets"
)

// Geometry of the fixed part of every screen, in dp.
const (
	margin       = 16
	headerHeight = 56
	statusHeight = 96
	buttonHeight = 56
)

// DefaultSize is the window's size on first show, in dp.
var DefaultSize = image.Pt(440, 760)

// PrimaryButton is where the big button is in a window of size pixels at
// metric m.
func PrimaryButton(size image.Point, m unit.Metric) image.Rectangle {
	top := m.Dp(headerHeight + statusHeight)
	return image.Rect(m.Dp(margin), top, size.X-m.Dp(margin), top+m.Dp(buttonHeight))
}

// headerButtonWidth is the width of the header's buttons, in dp.
const headerButtonWidth = 96

// HeaderButton is where the header's right button is (Settings on the main
// screen, Back on the settings and account pages): its centre is a safe
// place to click.
func HeaderButton(size image.Point, m unit.Metric) image.Rectangle {
	return image.Rect(size.X-m.Dp(margin+headerButtonWidth), m.Dp(8), size.X-m.Dp(margin), m.Dp(headerHeight-8))
}

// AccountButton is where the header's Account button is (main screen),
// left of HeaderButton.
func AccountButton(size image.Point, m unit.Metric) image.Rectangle {
	r := HeaderButton(size, m)
	return r.Sub(image.Pt(m.Dp(headerButtonWidth+8), 0))
}

var (
	ink      = color.NRGBA{R: 0x1d, G: 0x23, B: 0x2e, A: 0xff}
	muted    = color.NRGBA{R: 0x5f, G: 0x66, B: 0x70, A: 0xff}
	line     = color.NRGBA{R: 0xe3, G: 0xe6, B: 0xea, A: 0xff}
	paper    = color.NRGBA{R: 0xff, G: 0xff, B: 0xff, A: 0xff}
	problemB = color.NRGBA{R: 0xfd, G: 0xec, B: 0xec, A: 0xff}
	noticeB  = color.NRGBA{R: 0xfd, G: 0xf6, B: 0xe3, A: 0xff}
)

// UI is the window's widget state.
type UI struct {
	// Page is the page the user navigated to.
	Page viewmodel.Page

	th                         *material.Theme
	icon                       paint.ImageOp
	primary, secondary, header widget.Clickable
	accountHeader              widget.Clickable
	dismiss, open              widget.Clickable
	acct                       accountWidgets
	mode                       widget.Enum
	entry, exit                picker
	toggles                    map[string]*widget.Bool
	fields                     map[string]*field
	fix                        widget.Selectable
	list                       widget.List
}

type picker struct {
	open     widget.Clickable
	expanded bool
	choice   widget.Enum
}

type field struct {
	ed    widget.Editor
	save  widget.Clickable
	shown string // the setting's value last put into the editor
}

// New returns the window's UI on the main page.
func New() *UI {
	th := material.NewTheme()
	th.Shaper = text.NewShaper(text.WithCollection(gofont.Collection()))
	th.Palette.Fg, th.Palette.Bg, th.Palette.ContrastBg = ink, paper, viewmodel.Blue
	u := &UI{th: th, toggles: map[string]*widget.Bool{}, fields: map[string]*field{}}
	u.list.Axis = layout.Vertical
	u.acct.phrase.SingleLine, u.acct.phrase.Submit, u.acct.phrase.Mask = true, true, '•'
	if img, err := png.Decode(bytes.NewReader(assets.AppIcon(false))); err == nil {
		u.icon = paint.NewImageOp(img)
	}
	for _, s := range viewmodel.Settings {
		switch s.Kind {
		case viewmodel.Toggle:
			u.toggles[s.Key] = new(widget.Bool)
		case viewmodel.Text:
			f := &field{}
			f.ed.SingleLine, f.ed.Submit = true, true
			u.fields[s.Key] = f
		}
	}
	return u
}

// Layout handles this frame's input, draws the view of m and returns it with
// what the user asked for.
func (u *UI) Layout(gtx layout.Context, m viewmodel.Model) (viewmodel.View, []viewmodel.Intent) {
	page := u.Page
	v := viewmodel.Build(m, page, gtx.Now)
	intents := u.update(gtx, v)
	if u.Page != page {
		v = viewmodel.Build(m, u.Page, gtx.Now)
	}
	paint.Fill(gtx.Ops, paper)
	layout.Flex{Axis: layout.Vertical}.Layout(gtx,
		layout.Rigid(func(gtx layout.Context) layout.Dimensions { return u.layoutHeader(gtx, v) }),
		layout.Rigid(func(gtx layout.Context) layout.Dimensions { return u.layoutStatus(gtx, v) }),
		layout.Rigid(func(gtx layout.Context) layout.Dimensions { return u.layoutPrimary(gtx, v) }),
		layout.Flexed(1, func(gtx layout.Context) layout.Dimensions { return u.layoutBody(gtx, v) }),
	)
	if v.Redraw > 0 {
		gtx.Execute(op.InvalidateCmd{At: gtx.Now.Add(v.Redraw)})
	}
	return v, intents
}

// update turns clicks into intents (navigation stays here) and puts the
// view's values into the widgets.
func (u *UI) update(gtx layout.Context, v viewmodel.View) []viewmodel.Intent {
	var out []viewmodel.Intent
	if u.primary.Clicked(gtx) && v.Primary.Enabled {
		out = append(out, v.Primary.Intent)
	}
	if u.secondary.Clicked(gtx) && v.Secondary != nil && v.Secondary.Enabled {
		out = append(out, v.Secondary.Intent)
	}
	clicked := len(out) > 0
	if u.dismiss.Clicked(gtx) {
		out = append(out, viewmodel.Intent{Kind: viewmodel.IntentDismiss})
		clicked = true
	}
	if u.header.Clicked(gtx) {
		switch {
		case v.Screen == viewmodel.ScreenSettings || v.Screen == viewmodel.ScreenAccount:
			if v.CanGoBack {
				u.Page = viewmodel.PageMain
			}
		case v.CanOpenSettings:
			u.Page = viewmodel.PageSettings
		}
		clicked = true
	}
	if u.accountHeader.Clicked(gtx) {
		if v.Screen == viewmodel.ScreenMain && v.CanOpenSettings {
			u.Page = viewmodel.PageAccount
		}
		clicked = true
	}
	if u.open.Clicked(gtx) {
		if v.Problem != nil && v.Problem.Open != viewmodel.PageMain {
			u.Page = v.Problem.Open
		}
		clicked = true
	}
	if in := u.updateAccount(gtx, v); len(in) > 0 {
		out = append(out, in...)
		clicked = true
	}
	if clicked {
		// A clicked button keeps the focus and looks darker; the big button's
		// colour is the state's, so let go of the focus.
		gtx.Execute(key.FocusCmd{})
	}
	if u.mode.Update(gtx) && v.Mode.Enabled {
		out = append(out, viewmodel.Intent{Kind: viewmodel.IntentMode, Value: u.mode.Value})
	}
	u.mode.Value = v.Mode.Selected
	for _, p := range []struct {
		p    *picker
		c    viewmodel.Choice
		kind viewmodel.IntentKind
	}{{&u.entry, v.Entry, viewmodel.IntentEntry}, {&u.exit, v.Exit, viewmodel.IntentExit}} {
		if p.p.open.Clicked(gtx) {
			p.p.expanded = !p.p.expanded
		}
		if p.p.choice.Update(gtx) && p.c.Enabled {
			out = append(out, viewmodel.Intent{Kind: p.kind, Value: p.p.choice.Value})
			p.p.expanded = false
		}
		p.p.choice.Value = p.c.Selected
		if !p.c.Enabled {
			p.p.expanded = false
		}
	}
	for _, s := range v.Settings {
		switch s.Kind {
		case viewmodel.Toggle:
			b := u.toggles[s.Key]
			if b.Update(gtx) && s.Enabled {
				out = append(out, viewmodel.Intent{Kind: viewmodel.IntentSetting, Key: s.Key, Value: onOff(b.Value)})
			}
			b.Value = s.Value == "on"
		case viewmodel.Text:
			f := u.fields[s.Key]
			submitted := false
			for {
				e, ok := f.ed.Update(gtx)
				if !ok {
					break
				}
				if _, ok := e.(widget.SubmitEvent); ok {
					submitted = true
				}
			}
			if (f.save.Clicked(gtx) || submitted) && s.Enabled {
				out = append(out, viewmodel.Intent{Kind: viewmodel.IntentSetting, Key: s.Key, Value: f.ed.Text()})
			}
			// Follow the daemon's value unless the user is editing.
			if f.ed.Text() == f.shown && s.Value != f.shown {
				f.ed.SetText(s.Value)
			}
			if s.Value != f.shown && (f.ed.Text() == s.Value) {
				f.shown = s.Value
			}
		}
	}
	return out
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func (u *UI) layoutHeader(gtx layout.Context, v viewmodel.View) layout.Dimensions {
	size := image.Pt(gtx.Constraints.Max.X, gtx.Dp(headerHeight))
	gtx.Constraints = layout.Exact(size)
	paint.FillShape(gtx.Ops, line, clip.Rect{Min: image.Pt(0, size.Y-gtx.Dp(1)), Max: size}.Op())
	layout.Inset{Left: margin, Right: margin}.Layout(gtx, func(gtx layout.Context) layout.Dimensions {
		return layout.Flex{Alignment: layout.Middle}.Layout(gtx,
			layout.Rigid(func(gtx layout.Context) layout.Dimensions {
				if u.icon.Size() == (image.Point{}) {
					return layout.Dimensions{}
				}
				return layout.Inset{Right: 10}.Layout(gtx, func(gtx layout.Context) layout.Dimensions {
					img := widget.Image{Src: u.icon, Fit: widget.Contain}
					gtx.Constraints = layout.Exact(image.Pt(gtx.Dp(28), gtx.Dp(28)))
					return img.Layout(gtx)
				})
			}),
			layout.Flexed(1, func(gtx layout.Context) layout.Dimensions {
				gtx.Constraints.Min.Y = 0
				l := material.H6(u.th, v.Heading)
				l.Font.Weight = font.Bold
				return l.Layout(gtx)
			}),
		)
	})
	label := ""
	switch {
	case v.Screen == viewmodel.ScreenSettings || v.Screen == viewmodel.ScreenAccount:
		if v.CanGoBack {
			label = "Back"
		}
	case v.CanOpenSettings:
		label = "Settings"
		u.headerButton(gtx, AccountButton(size, gtx.Metric), &u.accountHeader, "Account")
	}
	if label != "" {
		u.headerButton(gtx, HeaderButton(size, gtx.Metric), &u.header, label)
	}
	return layout.Dimensions{Size: size}
}

// headerButton lays out a flat button at r.
func (u *UI) headerButton(gtx layout.Context, r image.Rectangle, c *widget.Clickable, label string) {
	defer op.Offset(r.Min).Push(gtx.Ops).Pop()
	gtx.Constraints = layout.Exact(r.Size())
	u.flatButton(gtx, c, label)
}

// flatButton is a button without hover, focus or ripple looks: it keeps
// its colour whatever the pointer did, as screenshots should.
func (u *UI) flatButton(gtx layout.Context, c *widget.Clickable, label string) layout.Dimensions {
	return c.Layout(gtx, func(gtx layout.Context) layout.Dimensions {
		size := gtx.Constraints.Min
		paint.FillShape(gtx.Ops, line, clip.UniformRRect(image.Rectangle{Max: size}, gtx.Dp(6)).Op(gtx.Ops))
		return layout.Center.Layout(gtx, material.Body1(u.th, label).Layout)
	})
}

func (u *UI) layoutStatus(gtx layout.Context, v viewmodel.View) layout.Dimensions {
	size := image.Pt(gtx.Constraints.Max.X, gtx.Dp(statusHeight))
	gtx.Constraints = layout.Exact(size)
	layout.Inset{Left: margin, Right: margin, Top: 14, Bottom: 8}.Layout(gtx, func(gtx layout.Context) layout.Dimensions {
		gtx.Constraints.Min = image.Point{}
		return layout.Flex{Axis: layout.Vertical}.Layout(gtx,
			layout.Rigid(func(gtx layout.Context) layout.Dimensions {
				return layout.Flex{Alignment: layout.Middle}.Layout(gtx,
					layout.Rigid(func(gtx layout.Context) layout.Dimensions {
						d := gtx.Dp(14)
						paint.FillShape(gtx.Ops, v.Status.Color, clip.Ellipse{Max: image.Pt(d, d)}.Op(gtx.Ops))
						return layout.Dimensions{Size: image.Pt(d+gtx.Dp(10), d)}
					}),
					layout.Flexed(1, func(gtx layout.Context) layout.Dimensions {
						l := material.H5(u.th, v.Status.Headline)
						l.Color, l.MaxLines, l.Font.Weight = v.Status.Color, 1, font.Bold
						return l.Layout(gtx)
					}),
				)
			}),
			layout.Rigid(layout.Spacer{Height: 6}.Layout),
			layout.Rigid(func(gtx layout.Context) layout.Dimensions {
				l := material.Body2(u.th, v.Status.Detail)
				l.Color, l.MaxLines = muted, 2
				return l.Layout(gtx)
			}),
		)
	})
	return layout.Dimensions{Size: size}
}

func (u *UI) layoutPrimary(gtx layout.Context, v viewmodel.View) layout.Dimensions {
	size := image.Pt(gtx.Constraints.Max.X, gtx.Dp(buttonHeight))
	r := PrimaryButton(image.Pt(size.X, 0), gtx.Metric)
	r = r.Sub(image.Pt(0, r.Min.Y))
	defer op.Offset(r.Min).Push(gtx.Ops).Pop()
	gtx.Constraints = layout.Exact(r.Size())
	// Disabled looks come from the view's colour; clicks on a disabled
	// button are ignored in update.
	b := material.Button(u.th, &u.primary, v.Primary.Label)
	b.Background, b.CornerRadius, b.TextSize = v.Primary.Color, 28, 20
	b.Font.Weight = font.Bold
	b.Layout(gtx)
	return layout.Dimensions{Size: size}
}

// layoutBody is the scrolling part under the big button.
func (u *UI) layoutBody(gtx layout.Context, v viewmodel.View) layout.Dimensions {
	var ws []layout.Widget
	switch v.Screen {
	case viewmodel.ScreenDaemon:
		ws = u.daemonWidgets(v)
	case viewmodel.ScreenSettings:
		ws = u.settingsWidgets(v)
	case viewmodel.ScreenAccount:
		ws = u.accountWidgets(v)
	default:
		ws = u.mainWidgets(v)
	}
	return layout.Inset{Top: 8}.Layout(gtx, func(gtx layout.Context) layout.Dimensions {
		return material.List(u.th, &u.list).Layout(gtx, len(ws), func(gtx layout.Context, i int) layout.Dimensions {
			return layout.Inset{Left: margin, Right: margin, Top: 6, Bottom: 6}.Layout(gtx, ws[i])
		})
	})
}

func (u *UI) mainWidgets(v viewmodel.View) []layout.Widget {
	var ws []layout.Widget
	if s := v.Secondary; s != nil {
		ws = append(ws, func(gtx layout.Context) layout.Dimensions {
			b := material.Button(u.th, &u.secondary, s.Label)
			b.Background, b.CornerRadius = s.Color, 20
			gtx.Constraints.Min.X = gtx.Constraints.Max.X
			return b.Layout(gtx)
		})
	}
	if p := v.Progress; p != nil {
		ws = append(ws, func(gtx layout.Context) layout.Dimensions {
			return layout.Flex{Axis: layout.Vertical}.Layout(gtx,
				layout.Rigid(func(gtx layout.Context) layout.Dimensions {
					s := p.Stage
					if p.Steps > 0 {
						s = "Step " + strconv.Itoa(p.Step) + " of " + strconv.Itoa(p.Steps) + ": " + s
					}
					if p.Attempt > 1 {
						s += " (attempt " + strconv.Itoa(p.Attempt) + ")"
					}
					return material.Body2(u.th, s).Layout(gtx)
				}),
				layout.Rigid(layout.Spacer{Height: 6}.Layout),
				layout.Rigid(func(gtx layout.Context) layout.Dimensions {
					pb := material.ProgressBar(u.th, p.Fraction())
					pb.Color = viewmodel.Amber
					return pb.Layout(gtx)
				}),
			)
		})
	}
	if e := v.Problem; e != nil {
		ws = append(ws, u.problemOpen(e, v.Dismiss, e.Open != viewmodel.PageMain))
	}
	ws = append(ws, u.notices(v)...)
	if len(v.Rows) > 0 {
		ws = append(ws, u.rows(v.Rows))
	}
	ws = append(ws, u.section("Mode"), u.modeSwitch(v.Mode))
	ws = append(ws, u.section("Location"), u.picker(&u.entry, v.Entry), u.picker(&u.exit, v.Exit))
	return ws
}

// notices are the view's notices, as cards.
func (u *UI) notices(v viewmodel.View) []layout.Widget {
	var ws []layout.Widget
	for _, n := range v.Notices {
		ws = append(ws, u.card(noticeB, func(gtx layout.Context) layout.Dimensions {
			return material.Body2(u.th, n).Layout(gtx)
		}))
	}
	return ws
}

// pageNames name the pages a problem card can open.
var pageNames = map[viewmodel.Page]string{viewmodel.PageSettings: "Settings", viewmodel.PageAccount: "Account"}

// problem is a failure's card.
func (u *UI) problem(e *viewmodel.Explanation, dismiss bool) layout.Widget {
	return u.problemOpen(e, dismiss, false)
}

// problemOpen is a failure's card that, when open is set, also offers the
// page where it can be fixed (e.Open).
func (u *UI) problemOpen(e *viewmodel.Explanation, dismiss, open bool) layout.Widget {
	return u.card(problemB, func(gtx layout.Context) layout.Dimensions {
		children := []layout.FlexChild{
			layout.Rigid(func(gtx layout.Context) layout.Dimensions {
				l := material.Subtitle1(u.th, e.Title)
				l.Color, l.Font.Weight = viewmodel.Red, font.Bold
				return l.Layout(gtx)
			}),
		}
		for _, s := range []string{e.Detail, e.Fix} {
			if s != "" {
				children = append(children, layout.Rigid(layout.Spacer{Height: 4}.Layout),
					layout.Rigid(material.Body2(u.th, s).Layout))
			}
		}
		var buttons []layout.FlexChild
		if open {
			buttons = append(buttons, layout.Rigid(func(gtx layout.Context) layout.Dimensions {
				b := material.Button(u.th, &u.open, "Open the "+pageNames[e.Open]+" page")
				b.Background = viewmodel.Blue
				return b.Layout(gtx)
			}), layout.Rigid(layout.Spacer{Width: 8}.Layout))
		}
		if dismiss {
			buttons = append(buttons, layout.Rigid(func(gtx layout.Context) layout.Dimensions {
				b := material.Button(u.th, &u.dismiss, "Dismiss")
				b.Background, b.Color = line, ink
				return b.Layout(gtx)
			}))
		}
		if len(buttons) > 0 {
			children = append(children, layout.Rigid(layout.Spacer{Height: 8}.Layout),
				layout.Rigid(func(gtx layout.Context) layout.Dimensions {
					return layout.Flex{}.Layout(gtx, buttons...)
				}))
		}
		return layout.Flex{Axis: layout.Vertical}.Layout(gtx, children...)
	})
}

func (u *UI) card(bg color.NRGBA, w layout.Widget) layout.Widget {
	return func(gtx layout.Context) layout.Dimensions {
		gtx.Constraints.Min.X = gtx.Constraints.Max.X
		m := op.Record(gtx.Ops)
		d := layout.UniformInset(12).Layout(gtx, w)
		call := m.Stop()
		paint.FillShape(gtx.Ops, bg, clip.UniformRRect(image.Rectangle{Max: d.Size}, gtx.Dp(8)).Op(gtx.Ops))
		call.Add(gtx.Ops)
		return d
	}
}

func (u *UI) section(title string) layout.Widget {
	return func(gtx layout.Context) layout.Dimensions {
		return layout.Inset{Top: 8}.Layout(gtx, func(gtx layout.Context) layout.Dimensions {
			l := material.Subtitle2(u.th, strings.ToUpper(title))
			l.Color = muted
			return l.Layout(gtx)
		})
	}
}

func (u *UI) rows(rows []viewmodel.Row) layout.Widget {
	return func(gtx layout.Context) layout.Dimensions {
		var children []layout.FlexChild
		for _, r := range rows {
			children = append(children, layout.Rigid(func(gtx layout.Context) layout.Dimensions {
				return layout.Inset{Top: 3, Bottom: 3}.Layout(gtx, func(gtx layout.Context) layout.Dimensions {
					return layout.Flex{}.Layout(gtx,
						layout.Rigid(func(gtx layout.Context) layout.Dimensions {
							gtx.Constraints = layout.Exact(image.Pt(gtx.Dp(120), gtx.Constraints.Max.Y))
							gtx.Constraints.Min.Y = 0
							l := material.Body2(u.th, r.Label)
							l.Color = muted
							return l.Layout(gtx)
						}),
						layout.Flexed(1, material.Body2(u.th, r.Value).Layout),
					)
				})
			}))
		}
		return layout.Flex{Axis: layout.Vertical}.Layout(gtx, children...)
	}
}

func (u *UI) modeSwitch(c viewmodel.Choice) layout.Widget {
	return func(gtx layout.Context) layout.Dimensions {
		if !c.Enabled {
			gtx = gtx.Disabled()
		}
		var children []layout.FlexChild
		for _, o := range c.Options {
			children = append(children,
				layout.Rigid(material.RadioButton(u.th, &u.mode, o.Value, o.Label).Layout),
				layout.Rigid(func(gtx layout.Context) layout.Dimensions {
					return layout.Inset{Left: 34, Bottom: 4}.Layout(gtx, func(gtx layout.Context) layout.Dimensions {
						l := material.Caption(u.th, o.Help)
						l.Color = muted
						return l.Layout(gtx)
					})
				}))
		}
		return layout.Flex{Axis: layout.Vertical}.Layout(gtx, children...)
	}
}

func (u *UI) picker(p *picker, c viewmodel.Choice) layout.Widget {
	return func(gtx layout.Context) layout.Dimensions {
		if !c.Enabled {
			gtx = gtx.Disabled()
		}
		children := []layout.FlexChild{
			layout.Rigid(func(gtx layout.Context) layout.Dimensions {
				return layout.Flex{Alignment: layout.Middle}.Layout(gtx,
					layout.Rigid(func(gtx layout.Context) layout.Dimensions {
						gtx.Constraints.Min.X = gtx.Dp(60)
						return material.Body1(u.th, c.Label).Layout(gtx)
					}),
					layout.Flexed(1, func(gtx layout.Context) layout.Dimensions {
						b := material.Button(u.th, &p.open, c.SelectedLabel+"  ▼")
						b.Background, b.Color = line, ink
						gtx.Constraints.Min.X = gtx.Constraints.Max.X
						return b.Layout(gtx)
					}),
				)
			}),
		}
		if c.Note != "" {
			children = append(children, layout.Rigid(func(gtx layout.Context) layout.Dimensions {
				l := material.Caption(u.th, c.Note)
				l.Color = muted
				return layout.Inset{Left: 60, Top: 2}.Layout(gtx, l.Layout)
			}))
		}
		if p.expanded {
			for _, o := range c.Options {
				children = append(children, layout.Rigid(func(gtx layout.Context) layout.Dimensions {
					return layout.Inset{Left: 60}.Layout(gtx, func(gtx layout.Context) layout.Dimensions {
						label := o.Label
						if o.Help != "" {
							label += " — " + o.Help
						}
						return material.RadioButton(u.th, &p.choice, o.Value, label).Layout(gtx)
					})
				}))
			}
		}
		return layout.Flex{Axis: layout.Vertical}.Layout(gtx, children...)
	}
}

func (u *UI) settingsWidgets(v viewmodel.View) []layout.Widget {
	var ws []layout.Widget
	if e := v.Problem; e != nil && v.Dismiss {
		ws = append(ws, u.problem(e, true))
	}
	for _, s := range v.Settings {
		ws = append(ws, func(gtx layout.Context) layout.Dimensions {
			if !s.Enabled {
				gtx = gtx.Disabled()
			}
			title := layout.Rigid(func(gtx layout.Context) layout.Dimensions {
				l := material.Body1(u.th, s.Label)
				l.Font.Weight = font.Medium
				return l.Layout(gtx)
			})
			help := layout.Rigid(func(gtx layout.Context) layout.Dimensions {
				l := material.Caption(u.th, s.Help)
				l.Color = muted
				return l.Layout(gtx)
			})
			if s.Kind == viewmodel.Toggle {
				return layout.Flex{Alignment: layout.Middle}.Layout(gtx,
					layout.Flexed(1, func(gtx layout.Context) layout.Dimensions {
						return layout.Flex{Axis: layout.Vertical}.Layout(gtx, title, help)
					}),
					layout.Rigid(layout.Spacer{Width: 12}.Layout),
					layout.Rigid(material.Switch(u.th, u.toggles[s.Key], s.Label).Layout),
				)
			}
			f := u.fields[s.Key]
			return layout.Flex{Axis: layout.Vertical}.Layout(gtx, title,
				layout.Rigid(layout.Spacer{Height: 4}.Layout),
				layout.Rigid(u.editorRow(&f.ed, s.Placeholder, material.Button(u.th, &f.save, "Save").Layout)),
				layout.Rigid(layout.Spacer{Height: 2}.Layout), help)
		})
	}
	if v.About != "" {
		ws = append(ws, func(gtx layout.Context) layout.Dimensions {
			l := material.Caption(u.th, "About: "+v.About)
			l.Color = muted
			return l.Layout(gtx)
		})
	}
	return ws
}

func (u *UI) daemonWidgets(v viewmodel.View) []layout.Widget {
	d := v.Daemon
	var ws []layout.Widget
	if d.Fix != "" {
		ws = append(ws, u.card(noticeB, func(gtx layout.Context) layout.Dimensions {
			return layout.Flex{Axis: layout.Vertical}.Layout(gtx,
				layout.Rigid(func(gtx layout.Context) layout.Dimensions {
					l := material.Subtitle2(u.th, "How to fix it")
					l.Font.Weight = font.Bold
					return l.Layout(gtx)
				}),
				layout.Rigid(layout.Spacer{Height: 4}.Layout),
				layout.Rigid(func(gtx layout.Context) layout.Dimensions {
					l := material.Body2(u.th, d.Fix)
					l.State = &u.fix // selectable, so the command can be copied
					m := op.Record(gtx.Ops)
					dims := l.Layout(gtx)
					call := m.Stop()
					// A selectable label has no semantic label of its own.
					defer clip.Rect{Max: dims.Size}.Push(gtx.Ops).Pop()
					semantic.LabelOp(d.Fix).Add(gtx.Ops)
					call.Add(gtx.Ops)
					return dims
				}),
			)
		}))
	}
	if d.Retry != "" {
		ws = append(ws, func(gtx layout.Context) layout.Dimensions {
			l := material.Body2(u.th, d.Retry+" The app keeps trying and carries on by itself once the service answers.")
			l.Color = muted
			return l.Layout(gtx)
		})
	}
	return ws
}

// editorRow is a bordered one-line editor with a button on its right: the
// settings' text fields and the account's phrase field.
func (u *UI) editorRow(ed *widget.Editor, placeholder string, button layout.Widget) layout.Widget {
	return func(gtx layout.Context) layout.Dimensions {
		return layout.Flex{Alignment: layout.Middle}.Layout(gtx,
			layout.Flexed(1, func(gtx layout.Context) layout.Dimensions {
				return widget.Border{Color: line, CornerRadius: 6, Width: 1}.Layout(gtx, func(gtx layout.Context) layout.Dimensions {
					return layout.UniformInset(8).Layout(gtx, func(gtx layout.Context) layout.Dimensions {
						e := material.Editor(u.th, ed, placeholder)
						e.TextSize = 14
						return e.Layout(gtx)
					})
				})
			}),
			layout.Rigid(layout.Spacer{Width: 8}.Layout),
			layout.Rigid(button),
		)
	}
}
