package ui

import (
	"image"

	"gioui.org/font"
	"gioui.org/io/semantic"
	"gioui.org/layout"
	"gioui.org/op"
	"gioui.org/op/clip"
	"gioui.org/op/paint"
	"gioui.org/widget"
	"gioui.org/widget/material"

	"github.com/nymvpn/nymvpn/app/viewmodel"
)

// mono is the typeface of the account's id and recovery phrase.
const mono = font.Typeface("Go Mono")

// accountWidgets is the account page's widget state.
type accountWidgets struct {
	create, importB, forget, yes, no, phraseDone widget.Clickable
	// phrase is the import's phrase field (masked unless show); shown and
	// id hold the new account's phrase and the id, selectable to copy.
	phrase    widget.Editor
	show      widget.Bool
	shown, id widget.Selectable
}

// updateAccount turns the account page's clicks into intents, and lets go
// of recovery phrases the view no longer shows.
func (u *UI) updateAccount(gtx layout.Context, v viewmodel.View) []viewmodel.Intent {
	a, av := &u.acct, v.Account
	var out []viewmodel.Intent
	buttons := []struct {
		c *widget.Clickable
		b viewmodel.Button
	}{{&a.create, av.Create}, {&a.forget, av.Forget}, {&a.phraseDone, av.PhraseDone}}
	if av.Confirm != nil {
		buttons = append(buttons, struct {
			c *widget.Clickable
			b viewmodel.Button
		}{&a.yes, av.Confirm.Yes}, struct {
			c *widget.Clickable
			b viewmodel.Button
		}{&a.no, av.Confirm.No})
	}
	for _, b := range buttons {
		if b.c.Clicked(gtx) && b.b.Enabled {
			out = append(out, b.b.Intent)
		}
	}
	submitted := false
	for {
		e, ok := a.phrase.Update(gtx)
		if !ok {
			break
		}
		if _, ok := e.(widget.SubmitEvent); ok {
			submitted = true
		}
	}
	if (a.importB.Clicked(gtx) || submitted) && av.Import.Enabled {
		in := av.Import.Intent
		in.Secret = a.phrase.Text()
		out = append(out, in)
	}
	a.show.Update(gtx)
	if v.Screen == viewmodel.ScreenMain || v.Screen == viewmodel.ScreenSettings || av.Exists {
		// Imported, or the user went elsewhere (not merely the daemon
		// restarting): the typed phrase goes.
		if a.phrase.Len() > 0 {
			a.phrase.SetText("")
		}
		a.show.Value = false
	}
	a.phrase.Mask = '•'
	if a.show.Value {
		a.phrase.Mask = 0
	}
	if av.Phrase == "" && a.shown.Text() != "" {
		a.shown.SetText("")
	}
	return out
}

func (u *UI) accountWidgets(v viewmodel.View) []layout.Widget {
	a, av := &u.acct, v.Account
	var ws []layout.Widget
	if e := v.Problem; e != nil && v.Dismiss {
		ws = append(ws, u.problem(e, true))
	}
	ws = append(ws, u.notices(v)...)
	if av.Phrase != "" {
		ws = append(ws, u.phraseCard(av))
	}
	ws = append(ws, u.section("Account"))
	if e := av.Problem; e != nil {
		ws = append(ws, u.problem(e, false))
	}
	if av.Note != "" {
		ws = append(ws, u.caption(av.Note, false))
	}
	if av.ID != "" {
		ws = append(ws, u.idRow(av.ID))
	}
	if len(av.Rows) > 0 {
		ws = append(ws, u.rows(av.Rows))
	}
	switch {
	case av.Exists:
		if len(av.Tickets) > 0 {
			ws = append(ws, u.section("Tickets left"), u.rows(av.Tickets))
		}
		for _, n := range av.Notes {
			ws = append(ws, u.caption(n, true))
		}
		if e := av.Refill; e != nil {
			ws = append(ws, u.problem(e, false))
		}
		if c := av.Confirm; c != nil {
			ws = append(ws, u.confirmCard(c))
		} else {
			ws = append(ws, u.button(&a.forget, av.Forget, true), u.caption(av.ForgetHelp, true))
		}
	case av.Create.Label != "":
		ws = append(ws, u.button(&a.create, av.Create, true), u.caption(av.CreateHelp, true))
		ws = append(ws, u.section("Import an account"), u.caption(av.ImportHelp, true), u.importField(av))
	}
	return ws
}

// button is one of the view's buttons; full makes it as wide as the page.
func (u *UI) button(c *widget.Clickable, b viewmodel.Button, full bool) layout.Widget {
	return func(gtx layout.Context) layout.Dimensions {
		if !b.Enabled {
			gtx = gtx.Disabled()
		}
		s := material.Button(u.th, c, b.Label)
		s.Background, s.CornerRadius = b.Color, 20
		if full {
			gtx.Constraints.Min.X = gtx.Constraints.Max.X
		}
		return s.Layout(gtx)
	}
}

// caption is a line of explanation; small makes it a caption's size.
func (u *UI) caption(s string, small bool) layout.Widget {
	return func(gtx layout.Context) layout.Dimensions {
		l := material.Body2(u.th, s)
		if small {
			l = material.Caption(u.th, s)
		}
		l.Color = muted
		return l.Layout(gtx)
	}
}

// selectable lays out text the user can select and copy. A selectable
// label has no semantic label of its own: it gets one, so tests (and
// screen readers) find the text.
func (u *UI) selectable(gtx layout.Context, sel *widget.Selectable, l material.LabelStyle) layout.Dimensions {
	l.State = sel
	m := op.Record(gtx.Ops)
	dims := l.Layout(gtx)
	call := m.Stop()
	defer clip.Rect{Max: dims.Size}.Push(gtx.Ops).Pop()
	semantic.LabelOp(l.Text).Add(gtx.Ops)
	call.Add(gtx.Ops)
	return dims
}

// idRow is the account's id, selectable.
func (u *UI) idRow(id string) layout.Widget {
	return func(gtx layout.Context) layout.Dimensions {
		return layout.Flex{}.Layout(gtx,
			layout.Rigid(func(gtx layout.Context) layout.Dimensions {
				gtx.Constraints = layout.Exact(image.Pt(gtx.Dp(120), gtx.Constraints.Max.Y))
				gtx.Constraints.Min.Y = 0
				l := material.Body2(u.th, "Account")
				l.Color = muted
				return l.Layout(gtx)
			}),
			layout.Flexed(1, func(gtx layout.Context) layout.Dimensions {
				l := material.Body2(u.th, id)
				l.Font.Typeface = mono
				return u.selectable(gtx, &u.acct.id, l)
			}),
		)
	}
}

// phraseCard shows a new account's recovery phrase, this once.
func (u *UI) phraseCard(av viewmodel.AccountView) layout.Widget {
	return u.card(noticeB, func(gtx layout.Context) layout.Dimensions {
		return layout.Flex{Axis: layout.Vertical}.Layout(gtx,
			layout.Rigid(func(gtx layout.Context) layout.Dimensions {
				l := material.Subtitle1(u.th, av.PhraseTitle)
				l.Font.Weight = font.Bold
				return l.Layout(gtx)
			}),
			layout.Rigid(layout.Spacer{Height: 4}.Layout),
			layout.Rigid(material.Body2(u.th, av.PhraseWarning).Layout),
			layout.Rigid(layout.Spacer{Height: 8}.Layout),
			layout.Rigid(func(gtx layout.Context) layout.Dimensions {
				gtx.Constraints.Min.X = gtx.Constraints.Max.X
				m := op.Record(gtx.Ops)
				dims := layout.UniformInset(10).Layout(gtx, func(gtx layout.Context) layout.Dimensions {
					gtx.Constraints.Min.X = gtx.Constraints.Max.X
					l := material.Body1(u.th, av.Phrase)
					l.Font.Typeface = mono
					return u.selectable(gtx, &u.acct.shown, l)
				})
				call := m.Stop()
				r := clip.UniformRRect(image.Rectangle{Max: dims.Size}, gtx.Dp(6))
				paint.FillShape(gtx.Ops, paper, r.Op(gtx.Ops))
				call.Add(gtx.Ops)
				return dims
			}),
			layout.Rigid(layout.Spacer{Height: 8}.Layout),
			layout.Rigid(u.button(&u.acct.phraseDone, av.PhraseDone, false)),
		)
	})
}

// confirmCard asks before forgetting the account.
func (u *UI) confirmCard(c *viewmodel.Confirm) layout.Widget {
	return u.card(problemB, func(gtx layout.Context) layout.Dimensions {
		return layout.Flex{Axis: layout.Vertical}.Layout(gtx,
			layout.Rigid(func(gtx layout.Context) layout.Dimensions {
				l := material.Subtitle1(u.th, c.Question)
				l.Font.Weight = font.Bold
				return l.Layout(gtx)
			}),
			layout.Rigid(layout.Spacer{Height: 4}.Layout),
			layout.Rigid(material.Body2(u.th, c.Detail).Layout),
			layout.Rigid(layout.Spacer{Height: 8}.Layout),
			layout.Rigid(func(gtx layout.Context) layout.Dimensions {
				return layout.Flex{}.Layout(gtx,
					layout.Rigid(u.button(&u.acct.yes, c.Yes, false)),
					layout.Rigid(layout.Spacer{Width: 8}.Layout),
					layout.Rigid(u.button(&u.acct.no, c.No, false)),
				)
			}),
		)
	})
}

// importField is the masked phrase field with its Import button.
func (u *UI) importField(av viewmodel.AccountView) layout.Widget {
	a := &u.acct
	return func(gtx layout.Context) layout.Dimensions {
		if !av.Import.Enabled {
			gtx = gtx.Disabled()
		}
		return layout.Flex{Axis: layout.Vertical}.Layout(gtx,
			layout.Rigid(u.editorRow(&a.phrase, av.ImportPlaceholder, u.button(&a.importB, av.Import, false))),
			layout.Rigid(material.CheckBox(u.th, &a.show, "Show the words").Layout),
		)
	}
}
