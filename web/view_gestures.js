// SAMIHS clicks in the axial view, caught before the remote view sees them, so every click there
// takes one path (not Slicer's placement mode, which now and then placed no point after an undo):
//   click              -> a point of the click mode (positive or negative);
//   shift + click      -> a negative point whatever the mode;
//   drag in box mode   -> a box (a rubber band shows it); a click without a drag is a box corner.
// Other mouse buttons go to the remote view (zoom, pan); so do the scroll wheel and moves.
// The server turns view pixels into a point on the slice (samihs_view_click / samihs_view_box).
(function () {
  if (window.samihsViewGestures) return;
  window.samihsViewGestures = true;
  const AXIAL = "Red";
  const DRAG_PIXELS = 4; // less movement than this is a click, not a box
  let drag = null; // {rect, x, y, band} while a box is drawn
  let press = null; // {rect, x, y, kind} while a click may be under way

  // The view under the pointer: its name (from the label SAMIHS puts on each view) and the image's box.
  function viewAt(event) {
    const image = event.target;
    if (!image || !["IMG", "CANVAS", "VIDEO"].includes(image.tagName)) return null;
    for (const label of document.querySelectorAll(".samihs-view-label")) {
      if (label.parentElement.contains(image)) {
        return { name: label.dataset.view, rect: image.getBoundingClientRect(), area: label.parentElement };
      }
    }
    return null;
  }

  function swallow(event) {
    event.stopPropagation();
    event.preventDefault();
  }

  function inView(rect, event) {
    return [event.clientX - rect.left, event.clientY - rect.top];
  }

  // Shift belongs to SAMIHS here: the remote view never sees it (Slicer's views give shift
  // meanings of their own, and a shift-click through them places no point).
  for (const type of ["keydown", "keyup"]) {
    window.addEventListener(type, (event) => {
      if (event.key === "Shift") event.stopPropagation();
    }, true);
  }

  document.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 || !window.trame) return;
    const view = viewAt(event);
    if (!view || view.name !== AXIAL) return;
    const [x, y] = inView(view.rect, event);
    const mode = window.trame.state.get("samihs_mode");
    swallow(event);
    if (event.shiftKey || mode !== "box") {
      press = { rect: view.rect, x, y, kind: event.shiftKey ? "negative" : mode };
    } else {
      const band = document.createElement("div");
      band.id = "samihs-box-band";
      band.style.cssText = "position:absolute; border:2px dashed #ffd91a; pointer-events:none; z-index:5";
      view.area.appendChild(band);
      drag = { rect: view.rect, x, y, band, areaRect: view.area.getBoundingClientRect() };
    }
  }, true);

  document.addEventListener("pointermove", (event) => {
    if (!drag) return;
    swallow(event);
    const [x, y] = inView(drag.rect, event);
    const offsetX = drag.rect.left - drag.areaRect.left, offsetY = drag.rect.top - drag.areaRect.top;
    Object.assign(drag.band.style, {
      left: `${offsetX + Math.min(x, drag.x)}px`, top: `${offsetY + Math.min(y, drag.y)}px`,
      width: `${Math.abs(x - drag.x)}px`, height: `${Math.abs(y - drag.y)}px`,
    });
  }, true);

  document.addEventListener("pointerup", (event) => {
    if (press) {
      swallow(event);
      const [x, y] = inView(press.rect, event);
      if (Math.hypot(x - press.x, y - press.y) < DRAG_PIXELS) {
        window.trame.trigger("samihs_view_click", [press.kind, press.x, press.y, press.rect.width, press.rect.height]);
      }
      press = null;
      return;
    }
    if (!drag) return;
    swallow(event);
    const [x, y] = inView(drag.rect, event);
    const { rect } = drag;
    drag.band.remove();
    if (Math.hypot(x - drag.x, y - drag.y) < DRAG_PIXELS) {
      window.trame.trigger("samihs_view_click", ["box", drag.x, drag.y, rect.width, rect.height]);
    } else {
      window.trame.trigger("samihs_view_box", [drag.x, drag.y, x, y, rect.width, rect.height]);
    }
    drag = null;
  }, true);
})();
