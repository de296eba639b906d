(function(){
// The Overview's tag filter applies as soon as a tag is picked.
var tag=document.querySelector('form.filter select[name="tag"]');
if(tag){tag.addEventListener('change',function(){tag.form.submit();});}
var conn=document.getElementById('conn');
function sel(a,v){return '['+a+'="'+(window.CSS&&CSS.escape?CSS.escape(v):v)+'"]';}
// Times as the server writes them, under headers that say UTC.
function utc(ms){return new Date(ms).toISOString().replace('T',' ').slice(0,19);}
function fmt(v){return Math.abs(v)>=100||v%1===0?v.toFixed(0):v.toFixed(Math.abs(v)>=1?1:2);}
// The server formats in the metric's precision: keep its decimals.
function same(s,v){var t=s.textContent,d=t.indexOf('.');return s.parentNode.hasAttribute('data-a')?fmt(v):v.toFixed(d<0?0:t.length-d-1);}
var count=0,rate=document.getElementById('rate');
if(rate){setInterval(function(){rate.textContent=(count/5).toFixed(1);count=0;},5000);}
var es=new EventSource('/events');
// Events missed (the server says `lagged`, or dropped a page that read too
// slowly and it reconnected) may hold an alert: the page is rendered again
// from the server's state, once the stream has been quiet of such news
// for a second and at most every five, so a long burst cannot loop it.
var dropped=false,resync=null,lastSync=Date.now();
function reloadSoon(){clearTimeout(resync);resync=setTimeout(function(){lastSync=Date.now();location.reload();},Math.max(1000,5000-(Date.now()-lastSync)));}
es.onopen=function(){conn.className='conn up';conn.title='live';if(dropped){dropped=false;reloadSoon();}};
es.onerror=function(){conn.className='conn';conn.title='reconnecting';dropped=true;};
es.addEventListener('lagged',reloadSoon);
es.addEventListener('reading',function(e){
  var r=JSON.parse(e.data);count++;
  var spans=document.querySelectorAll(sel('data-d',r.device)+' i'+sel('data-m',r.metric));
  var row=document.querySelector('#devices tr'+sel('data-d',r.device));
  if(!spans.length&&row){var s=document.createElement('i');s.setAttribute('data-a','1');s.setAttribute('data-m',r.metric);s.innerHTML=' <b></b>';s.insertBefore(document.createTextNode(r.metric),s.firstChild);row.querySelector('.vals').appendChild(s);spans=[s];}
  spans.forEach(function(s){var b=s.querySelector('b');b.textContent=same(b,r.value);s.classList.add('new');setTimeout(function(){s.classList.remove('new');},800);});
  if(row){var st=row.querySelector('.st');st.className='st receiving';st.textContent='receiving';row.cells[2].textContent='just now';}
  var recent=document.querySelector('#recent tbody');
  if(recent&&document.querySelector('.metric')&&document.querySelector('div'+sel('data-d',r.device)+'>h1')){var tr=document.createElement('tr');tr.innerHTML='<td>'+utc(r.at)+'</td><td></td><td></td>';tr.children[1].textContent=r.metric;tr.children[2].textContent=fmt(r.value);recent.insertBefore(tr,recent.firstChild);}
});
es.addEventListener('alert',function(e){
  var a=JSON.parse(e.data);
  var row=document.querySelector('#devices tr'+sel('data-d',a.device));
  if(row){var al=row.lastElementChild;var b=al.querySelector('.badge'+sel('data-rule',a.rule));
    if(a.state==='raised'){if(!b){b=document.createElement('span');b.className='badge';b.setAttribute('data-rule',a.rule);b.textContent=a.rule;al.appendChild(b);}row.classList.add('alert');}
    else if(a.state==='cleared'){if(b)b.remove();if(!al.querySelector('.badge'))row.classList.remove('alert');}}
  var act=document.querySelector('#active tbody');
  if(act){var was=act.querySelector('tr'+sel('data-d',a.device)+sel('data-rule',a.rule));if(was&&a.state!=='suppressed')was.remove();var none=act.querySelector('tr.empty');
    if(a.state==='raised'){if(none)none.remove();var tr=document.createElement('tr');tr.className='alert';tr.setAttribute('data-d',a.device);tr.setAttribute('data-rule',a.rule);tr.innerHTML='<td></td><td></td><td></td><td></td><td></td><td></td>';tr.children[0].textContent=a.device;tr.children[1].textContent=a.rule+' ('+a.kind+')';tr.children[2].textContent=utc(a.at);tr.children[3].textContent=a.value_text||fmt(a.value);tr.children[4].textContent=a.limit_text||fmt(a.limit);tr.children[5].textContent=a.reason||'';act.insertBefore(tr,act.firstChild);}
    else if(!act.querySelector('tr')){act.innerHTML='<tr class="empty"><td colspan="6" class="muted">No active alerts</td></tr>';}}
});
es.addEventListener('status',function(e){
  var s=JSON.parse(e.data);var row=document.querySelector('#devices tr'+sel('data-d',s.device));
  if(row){var st=row.querySelector('.st');st.className='st '+(s.online?'receiving':'offline');st.textContent=s.online?'receiving':'offline';}
});
es.addEventListener('window',function(e){document.body.setAttribute('data-windows',String(1+Number(document.body.getAttribute('data-windows')||0)));});
})();
