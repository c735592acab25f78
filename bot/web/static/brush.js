// Vary (Region)'s brush: the image on a <canvas>, painted with the pointer (mouse, pen or finger) or the
// keyboard (arrows move the brush, Space paints a dot, Shift+arrow paints a line). `mask()` is a PNG at the
// image's own size: white where painted (repaint), black elsewhere (keep).
const TINT = "#ff2d75";

export class Brush {
  constructor(canvas, slider, shown) {
    this.canvas = canvas;
    this.slider = slider;
    this.shown = shown;
    this.image = null;
    this.strokes = [];   // {size, points: [{x, y}]}, in the image's pixels; undo pops one
    this.current = null;
    this.cursor = null;  // where the keyboard's brush is, shown while the canvas has focus
    this.overlay = document.createElement("canvas");
    slider.addEventListener("input", () => { this.showSize(); this.draw(); });
    canvas.addEventListener("pointerdown", (event) => this.down(event));
    canvas.addEventListener("pointermove", (event) => this.move(event));
    for (const name of ["pointerup", "pointercancel", "lostpointercapture"]) {
      canvas.addEventListener(name, () => { this.current = null; });
    }
    canvas.addEventListener("keydown", (event) => this.key(event));
    canvas.addEventListener("focus", () => { this.cursor ??= this.centre(); this.draw(); });
    canvas.addEventListener("blur", () => this.draw());
  }

  async load(src) {
    const image = new Image();
    image.src = src;
    await image.decode();
    this.image = image;
    const {naturalWidth: width, naturalHeight: height} = image;
    this.canvas.width = this.overlay.width = width;
    this.canvas.height = this.overlay.height = height;
    this.canvas.style.setProperty("--ratio", String(width / height));  // the CSS keeps it within the screen
    const longest = Math.max(width, height);
    this.slider.max = String(Math.max(4, Math.round(longest / 2)));
    this.slider.value = String(Math.max(2, Math.round(longest / 6)));
    this.strokes = [];
    this.current = null;
    this.cursor = null;
    this.showSize();
    this.draw();
  }

  get painted() { return this.strokes.length > 0; }
  get size() { return Number(this.slider.value); }

  undo() { this.strokes.pop(); this.draw(); }
  clear() { this.strokes = []; this.draw(); }

  showSize() { this.shown.textContent = `${this.slider.value} px`; }

  centre() { return {x: this.canvas.width / 2, y: this.canvas.height / 2}; }

  at(event) {
    const box = this.canvas.getBoundingClientRect();
    return {x: (event.clientX - box.left) * this.canvas.width / box.width,
            y: (event.clientY - box.top) * this.canvas.height / box.height};
  }

  down(event) {
    if (!this.image || event.button > 0) return;
    event.preventDefault();
    this.canvas.setPointerCapture?.(event.pointerId);
    this.current = {size: this.size, points: [this.at(event)]};
    this.strokes.push(this.current);
    this.draw();
  }

  move(event) {
    if (!this.current) return;
    event.preventDefault();
    this.current.points.push(this.at(event));
    this.draw();
  }

  key(event) {
    const steps = {ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1]};
    if (!this.image) return;
    this.cursor ??= this.centre();
    if (event.key === " " || event.key === "Enter") {
      event.preventDefault();
      this.strokes.push({size: this.size, points: [{...this.cursor}]});
    } else if (event.key in steps) {
      event.preventDefault();
      const [dx, dy] = steps[event.key];
      const step = Math.max(1, this.size / 2);
      const from = {...this.cursor};
      this.cursor = {x: clamp(from.x + dx * step, 0, this.canvas.width), y: clamp(from.y + dy * step, 0, this.canvas.height)};
      if (event.shiftKey) this.strokes.push({size: this.size, points: [from, {...this.cursor}]});
    } else if ((event.key === "z" || event.key === "Z") && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      this.strokes.pop();
    } else {
      return;  // Tab, Escape and the rest do what they always do
    }
    this.draw();
  }

  paint(context, colour) {
    context.strokeStyle = context.fillStyle = colour;
    context.lineCap = context.lineJoin = "round";
    for (const {size, points} of this.strokes) {
      if (points.length === 1) {
        context.beginPath();
        context.arc(points[0].x, points[0].y, size / 2, 0, 2 * Math.PI);
        context.fill();
        continue;
      }
      context.lineWidth = size;
      context.beginPath();
      context.moveTo(points[0].x, points[0].y);
      for (const point of points.slice(1)) context.lineTo(point.x, point.y);
      context.stroke();
    }
  }

  draw() {
    if (!this.image) return;
    const context = this.canvas.getContext("2d");
    context.imageSmoothingEnabled = false;
    context.globalAlpha = 1;
    context.drawImage(this.image, 0, 0);
    const overlay = this.overlay.getContext("2d");
    overlay.clearRect(0, 0, this.overlay.width, this.overlay.height);
    this.paint(overlay, TINT);
    context.globalAlpha = 0.55;  // one flat tint however often a spot is painted over
    context.drawImage(this.overlay, 0, 0);
    context.globalAlpha = 1;
    if (this.cursor && this.canvas.matches(":focus-visible")) {  // the keyboard's brush, not the mouse's
      context.lineWidth = Math.max(1, this.canvas.width / 256);
      context.strokeStyle = "white";
      context.beginPath();
      context.arc(this.cursor.x, this.cursor.y, this.size / 2, 0, 2 * Math.PI);
      context.stroke();
    }
  }

  mask() {
    const mask = document.createElement("canvas");
    mask.width = this.canvas.width;
    mask.height = this.canvas.height;
    const context = mask.getContext("2d");
    context.fillStyle = "black";
    context.fillRect(0, 0, mask.width, mask.height);
    this.paint(context, "white");
    return mask.toDataURL("image/png");
  }
}

function clamp(value, low, high) { return Math.min(high, Math.max(low, value)); }
